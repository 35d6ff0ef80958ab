"""The world around the supervisor's core, faked and driven by one seeded RNG.

- :class:`FakeDevice`: one GPU as NVML sees it (capacity, memory of processes outside dsocr,
  the bytes each fake engine holds), or the CPU (no NVML).
- :class:`FakeEngine`: the engine's side of the real pipe protocol (``ipc.protocol`` frames):
  boots, loads (writing a fake segment), restores, offloads, runs batches with partials, and fails
  the ways real engines do: loads that fail or take long, deaths mid-batch or while idle, stalls
  past the request timeout, out-of-memory on a full device.
- :class:`FakeProcess` / :class:`FakeConnection`: the in-loop process and pipe that
  ``EngineHandle`` adopts (see its ``InLoopProcess``/``InLoopConnection``).
- :class:`FakeLauncher`: the zygote's place: forks that are quick, slow, fail or hang.
- :class:`FakeSegments`: the host's shared-memory segments, for the owners and the engines.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ipc import protocol as p
from supervisor.core.engine_handle import EngineSpec, Launched

_PIDS = itertools.count(4_000_000)  # above any real pid_max default: never a real process


@dataclass
class Faults:
    """Probabilities and delays of one schedule (drawn from its seed)."""

    boot_death: float = 0.0
    boot_hang: float = 0.0
    load_error: float = 0.0
    load_death: float = 0.0
    load_seconds: tuple[float, float] = (0.1, 2.0)
    infer_death: float = 0.0
    infer_stall: float = 0.0  # past the request timeout
    infer_item_error: float = 0.0
    infer_seconds: tuple[float, float] = (0.05, 1.0)
    idle_death_rate: float = 0.0  # deaths per simulated second while alive
    fork_fail: float = 0.0
    fork_hang: float = 0.0
    fork_seconds: tuple[float, float] = (0.01, 0.1)
    fork_hang_seconds: float = 5.0
    memory_return_seconds: tuple[float, float] = (0.01, 0.5)  # after a process dies


@dataclass
class FakeDevice:
    name: str  # "cpu" or "cuda:0"
    capacity: int = 0
    external: int = 0  # held by processes that are not ours
    held: dict[int, int] = field(default_factory=dict)  # engine pid -> bytes
    oom_with_others: list[str] = field(default_factory=list)  # violations: an over-granted device

    @property
    def used(self) -> int:
        return self.external + sum(self.held.values())

    nvml_seconds: float = 0.02  # an NVML query runs in a worker thread: other tasks run meanwhile

    async def free_bytes(self) -> int | None:
        if self.name == "cpu":
            return None
        await asyncio.sleep(self.nvml_seconds)
        return self.capacity - self.used

    def take(self, pid: int, nbytes: int, others_resident: bool, model: str) -> bool:
        if self.name == "cpu":
            return True
        if self.used + nbytes > self.capacity:
            if others_resident and self.external + nbytes <= self.capacity:
                self.oom_with_others.append(f"{model}: out of memory while another model held the device")
            return False
        self.held[pid] = nbytes
        return True

    def drop(self, pid: int) -> None:
        self.held.pop(pid, None)


class FakeSegments:
    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def exists(self, name: str) -> bool:
        return name in self.sizes

    def size(self, name: str) -> int:
        return self.sizes.get(name, 0)

    def unlink(self, name: str) -> bool:
        return self.sizes.pop(name, None) is not None


class FakeProcess:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pid: int | None = next(_PIDS)
        self.exitcode: int | None = None
        self._loop = loop
        self._on_exit: list[Callable[[], None]] = []
        self.reaped = False
        self.on_death: Callable[[], None] = lambda: None

    def is_alive(self) -> bool:
        return self.exitcode is None

    def on_exit(self, callback: Callable[[], None]) -> None:
        self._on_exit.append(callback)

    def die(self, code: int) -> None:
        if self.exitcode is not None:
            return
        self.exitcode = code
        self.on_death()
        self._loop.call_soon(self._reap)  # reaped a moment later, as a waitpid would

    def _reap(self) -> None:
        self.reaped = True
        for callback in self._on_exit:
            callback()

    def kill(self) -> None:
        self.die(-9)

    def join(self, timeout: float | None = None) -> None:  # never called on an in-loop process
        raise AssertionError("an in-loop process is never joined")


class FakeConnection:
    def __init__(self, loop: asyncio.AbstractEventLoop, engine: FakeEngine) -> None:
        self._loop = loop
        self._engine = engine
        self._on_frame: Callable[[bytes], None] | None = None
        self._on_eof: Callable[[], None] | None = None
        self.closed = False
        self.attached = False  # adopted by an EngineHandle

    def attach(self, on_frame: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self._on_frame, self._on_eof = on_frame, on_eof
        self.attached = True
        if not self._engine.process.is_alive():
            self._loop.call_soon(on_eof)

    def send_bytes(self, frame: bytes) -> None:
        if self.closed or not self._engine.process.is_alive():
            raise OSError("broken pipe")
        self._loop.call_soon(self._engine.receive, frame)

    def deliver(self, msg: p.Message) -> None:
        if self._on_frame is not None and not self.closed:
            self._on_frame(p.encode(msg))

    def eof(self) -> None:
        if self._on_eof is not None and not self.closed:
            self._loop.call_soon(self._on_eof)

    def close(self) -> None:
        self.closed = True


class World:
    """What every fake shares: the loop, the RNG, the device, the segments, the faults."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, device: FakeDevice,
                 faults: Faults, sizes: dict[str, int]) -> None:  # fmt: skip
        self.loop = loop
        self.rng = rng
        self.device = device
        self.faults = faults
        self.sizes = sizes  # model -> bytes of its weights
        self.segments = FakeSegments()
        self.engines: list[FakeEngine] = []
        self.weights_missing: set[str] = set()  # models whose loads fail (no weights on disk)

    def chance(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability

    def seconds(self, span: tuple[float, float]) -> float:
        return self.rng.uniform(*span)

    def live_engines(self) -> list[FakeEngine]:
        return [e for e in self.engines if not e.process.reaped]


class FakeEngine:
    """One engine process: answers the supervisor's messages after simulated delays."""

    def __init__(self, world: World, model: str) -> None:
        self.world = world
        self.model = model
        self.process = FakeProcess(world.loop)
        self.process.on_death = self._on_death
        self.conn = FakeConnection(world.loop, self)
        self.resident_bytes = 0
        self.born = world.loop.time()
        world.engines.append(self)
        faults = world.faults
        if world.chance(faults.boot_death):
            world.loop.call_later(world.rng.uniform(0.0, 0.5), self.process.die, 1)
        self.booting_hangs = world.chance(faults.boot_hang)
        if faults.idle_death_rate > 0:
            world.loop.call_later(world.rng.expovariate(faults.idle_death_rate), self.process.die, -11)

    def _on_death(self) -> None:
        # a dead process's GPU memory comes back a little later (the driver tears the context down)
        delay = self.world.seconds(self.world.faults.memory_return_seconds)
        self.world.loop.call_later(delay, self.world.device.drop, self.process.pid or 0)
        self.conn.eof()

    def _after(self, seconds: float, callback: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        def run() -> None:
            if self.process.is_alive():
                callback(*args, **kwargs)

        self.world.loop.call_later(seconds, run)

    def _reply(self, msg: p.Message, **result: Any) -> None:
        self.conn.deliver(p.reply_ok(msg, **result))

    def _error(self, msg: p.Message, type_: str, message: str) -> None:
        self.conn.deliver(p.reply_error(msg, type_, message))

    def receive(self, frame: bytes) -> None:
        if not self.process.is_alive():
            return
        msg = p.decode(frame)
        handler = getattr(self, f"_on_{type(msg).__name__.lower()}", None)
        if handler is None:
            self._error(msg, "protocol", f"the fake engine does not serve {type(msg).__name__}")
            return
        handler(msg)

    def _on_stats(self, msg: p.Stats) -> None:
        if self.booting_hangs:
            return  # never answers: the boot timeout must kill it
        self._after(0.01, self._reply, msg, device_memory={})

    def _others_resident(self) -> bool:
        return any(e is not self and e.resident_bytes for e in self.world.live_engines())

    def _place(self, msg: p.Message, model: str) -> bool:
        nbytes = self.world.sizes[model]
        if not self.world.device.take(self.process.pid or 0, nbytes, self._others_resident(), model):
            self._error(msg, "OutOfMemoryError", "CUDA out of memory")
            return False
        self.resident_bytes = nbytes
        return True

    def _on_load(self, msg: p.Load) -> None:
        faults = self.world.faults
        if self.world.chance(faults.load_death):
            self._after(self.world.seconds(faults.load_seconds), self.process.die, -9)
            return
        self._after(self.world.seconds(faults.load_seconds), self._finish_load, msg)

    def _finish_load(self, msg: p.Load) -> None:
        if msg.model in self.world.weights_missing or self.world.chance(self.world.faults.load_error):
            self._error(msg, "WeightsUnavailable", f"no weights for {msg.model}")
            return
        self.world.segments.sizes[msg.segment] = self.world.sizes[msg.model]
        if self._place(msg, msg.model):
            self._reply(msg, weights_bytes=self.world.sizes[msg.model], batch_limit=4)

    def _on_restore(self, msg: p.Restore) -> None:
        self._after(self.world.seconds((0.01, 0.3)), self._finish_restore, msg)

    def _finish_restore(self, msg: p.Restore) -> None:
        if not self.world.segments.exists(msg.segment):
            self._error(msg, "SegmentMissing", f"no segment {msg.segment}")
        elif self._place(msg, msg.model):
            self._reply(msg, batch_limit=4)

    def _on_offload(self, msg: p.Offload) -> None:
        def done() -> None:
            self.world.device.drop(self.process.pid or 0)
            self.resident_bytes = 0
            self._reply(msg)

        self._after(0.01, done)

    def _on_infer(self, msg: p.Infer) -> None:
        faults, rng = self.world.faults, self.world.rng
        if not self.resident_bytes and self.world.device.name != "cpu":
            self._error(msg, "NotLoaded", "no model on the device")
            return
        if self.world.chance(faults.infer_stall):
            return  # never answers: the request timeout must kill it
        seconds = self.world.seconds(faults.infer_seconds)
        if self.world.chance(faults.infer_death):
            self._after(rng.uniform(0, seconds), self.process.die, -11)
            return
        if msg.stream:
            for i in range(len(msg.images)):
                self._after(seconds / 2, self.conn.deliver, p.Partial(msg.id, index=i, text="par"))
        results = []
        for i in range(len(msg.images)):
            if self.world.chance(faults.infer_item_error):
                results.append({"error": {"type": "bad_image", "message": "cannot decode"}})
            else:
                results.append({"text": f"page {i}", "device_memory": {}})
        self._after(seconds, self._reply, msg, results=results)

    def _on_shutdown(self, msg: p.Shutdown) -> None:
        self._reply(msg)
        self._after(0.01, self.process.die, 0)


class FakeLauncher:
    """A launcher for one model's engines: the zygote's fork, with its faults."""

    def __init__(self, world: World, model: str, on_launch: Callable[[], None]) -> None:
        self.world = world
        self.model = model
        self.on_launch = on_launch  # the harness checks here that a failed model starts nothing

    async def __call__(self, spec: EngineSpec) -> Launched:
        self.on_launch()
        faults = self.world.faults
        if self.world.chance(faults.fork_hang):
            await asyncio.sleep(faults.fork_hang_seconds)  # a stopped zygote: the fork times out
        else:
            await asyncio.sleep(self.world.seconds(faults.fork_seconds))
        if self.world.chance(faults.fork_fail):
            raise OSError("fork failed: resource temporarily unavailable")
        engine = FakeEngine(self.world, self.model)
        return Launched(engine.process, engine.conn, None)  # type: ignore[arg-type]
