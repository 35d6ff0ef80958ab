"""One seeded schedule of the supervisor's core, and the invariants checked after every step.

``run_schedule(seed)`` builds a world from the seed (one to three models on a GPU or the CPU,
settings, fault rates), starts the real ``ModelLifecycle`` owners with the real
``DeviceArbiter``, ``EngineHandle`` and ``ChildRegistry`` on a :class:`VirtualClockLoop`, and
drives them with a random mix of infer, load, offload, stop, release, keep_alive, cancelled
callers, killed engines, vanished segments, missing weights and idle time, then closes them.
It returns the violations found (empty: the schedule held). The invariants:

- every caller's future is resolved, with an answer or a documented error, within ``ANSWER_BOUND``
  simulated seconds;
- no owner task ends except by ``close()`` (one restarted after an injected cancellation counts);
- every state change is in ``ALLOWED``; a model in ``failed`` starts no engine;
- live fake engines == the child registry's engines, and each is a model's current engine or
  one being killed; none after ``close()``, and no segment either;
- the device never holds more than its capacity, and no load fails for want of room that the
  arbiter should have made (another model still resident); the arbiter is never asked for room
  by a model that holds it (two owners can then never wait on each other).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from ipc.errors import EngineDead, EngineFailure
from supervisor.core.children import ChildRegistry
from supervisor.core.device_arbiter import DeviceArbiter
from supervisor.core.engine_handle import EngineHandle
from supervisor.core.lifecycle import (
    ALLOWED,
    ModelFailed,
    ModelLifecycle,
    QueueFull,
    RequestTimeout,
    ServiceClosing,
    State,
)
from supervisor.core.settings import OFFLOAD_POLICIES, Settings
from tests.sim.fakes import FakeDevice, FakeLauncher, Faults, World
from tests.sim.virtual_loop import Stalled, VirtualClockLoop

GIB = 2**30
ANSWER_BOUND = 600.0  # simulated seconds within which every caller must have its answer
CHECK_EVERY = 0.5
DOCUMENTED = (QueueFull, ModelFailed, ServiceClosing, RequestTimeout, EngineDead, EngineFailure)
MODEL_NAMES = ("alpha", "beta", "gamma")


@dataclass
class Op:
    name: str
    model: str
    started: float
    task: asyncio.Task[Any]
    cancel_injected: bool = False


@dataclass
class Report:
    seed: int
    violations: list[str] = field(default_factory=list)
    ops: int = 0
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    simulated_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations


class _Errors(logging.Handler):
    """Log records that mean a bug in the core, not a fault it handled."""

    BAD = ("owner step failed", "Task exception was never retrieved", "Exception in callback",
           "InvalidTransition", "LeaseError")  # fmt: skip

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        if any(bad in text for bad in self.BAD):
            self.found.append(text[:300])


class Simulation:
    """One schedule. ``fixed`` pins parts of the world the seed would draw (directed scenarios):
    ``models``, ``sizes``, ``device``, ``capacity``, ``external``, ``faults``, and Settings fields."""

    def __init__(self, seed: int, arbiter: type[DeviceArbiter] = DeviceArbiter,
                 owner: type[ModelLifecycle] = ModelLifecycle, **fixed: Any) -> None:  # fmt: skip
        self.arbiter_type = arbiter
        self.owner_type = owner
        self.fixed = fixed
        self.seed = seed
        self.rng = random.Random(seed)
        self.report = Report(seed)
        self.ops: list[Op] = []
        self.injected_owner_kills: dict[str, int] = {}
        self.closed = False

    # -- the world, drawn from the seed ----------------------------------------------------

    def build(self, loop: VirtualClockLoop) -> None:
        rng, fixed = self.rng, dict(self.fixed)
        n = rng.choice((1, 2, 2, 3))
        models = fixed.pop("models", list(MODEL_NAMES[:n]))
        on_gpu = rng.random() < 0.7
        sizes = fixed.pop("sizes", {m: rng.choice((1, 2, 3, 5)) * GIB for m in models})
        capacity = fixed.pop("capacity", rng.choice((6, 8, 12)) * GIB)
        external = fixed.pop("external", rng.choice((0, 0, 1)) * GIB)
        device = FakeDevice(fixed.pop("device", "cuda:0" if on_gpu else "cpu"), capacity, external=external)
        f = lambda hi: rng.choice((0.0, 0.0, rng.uniform(0, hi)))  # noqa: E731 - mostly no fault
        faults = Faults(
            boot_death=f(0.2), boot_hang=f(0.1), load_error=f(0.4), load_death=f(0.1),
            infer_death=f(0.15), infer_stall=f(0.08), infer_item_error=f(0.2),
            idle_death_rate=f(0.05), fork_fail=f(0.15), fork_hang=f(0.1),
        )  # fmt: skip
        self.world = World(loop, rng, device, fixed.pop("faults", faults), sizes)
        drawn = dict(
            models=models,
            device=device.name,
            idle_timeout=rng.choice((0.0, 1.0, 3.0, 10.0)),
            engine_idle_timeout=rng.choice((0.0, 0.0, 2.0, 8.0)),
            offload_policy=rng.choice(OFFLOAD_POLICIES),
            request_timeout=rng.choice((2.0, 5.0)),
            queue_size=rng.choice((1, 2, 4, 8)),
            boot_timeout=rng.choice((1.0, 3.0)),
            max_batch=rng.choice((None, 1, 2, 4)),
            max_load_failures=rng.choice((0, 1, 2, 3)),
            engine_threads=1,
            log_level="WARNING",
        )
        self.settings = Settings(**{**drawn, **fixed})
        self.registry = ChildRegistry()
        self.lifecycles: dict[str, ModelLifecycle] = {}
        self.arbiter = self.arbiter_type(self.lifecycles, device.free_bytes)
        for model in models:
            lc = self.owner_type(
                model, self.settings, device.name,
                launcher=FakeLauncher(self.world, model, lambda m=model: self._launching(m)),
                arbiter=self.arbiter, registry=self.registry, clock=loop.time,
                segments=self.world.segments, make_engine=EngineHandle,
                on_engine_killed=self._memory_back,
            )  # fmt: skip
            lc.on_transition = lambda before, after, m=model: self._transition(m, before, after)
            self.lifecycles[model] = lc

    async def _memory_back(self, pid: int, model: str) -> None:
        """The service's ``wait_gpu_memory_back``: NVML polled until the killed engine's memory is free."""
        for _ in range(200):
            if pid not in self.world.device.held:
                return
            await asyncio.sleep(0.05)

    # -- checks ----------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        if len(self.report.violations) < 20:
            self.report.violations.append(f"t={self.world.loop.time():.2f}s {text}")

    def _launching(self, model: str) -> None:
        if self.lifecycles[model].state is State.FAILED:
            self.violation(f"{model}: an engine started for a failed model")

    def _transition(self, model: str, before: State, after: State) -> None:
        if after not in ALLOWED[before]:
            self.violation(f"{model}: {before.value} -> {after.value} is not allowed")

    def check(self) -> None:
        now = self.world.loop.time()
        for op in self.ops:
            if not op.task.done() and now - op.started > ANSWER_BOUND:
                self.violation(f"{op.name}({op.model}) unanswered after {now - op.started:.0f}s")
                op.started = float("inf")  # said once
        if not self.closed:
            for model, lc in self.lifecycles.items():
                injected = self.injected_owner_kills.get(model, 0)
                if lc.owner_restarts > injected:
                    self.violation(f"{model}: owner restarted {lc.owner_restarts - injected} times on its own")
                elif not lc.owner_alive and lc.owner_restarts == injected:
                    self.violation(f"{model}: owner task is not running")
        live = {e.process.pid for e in self.world.live_engines() if e.conn.attached}
        for engine in self.world.live_engines():  # launched for a caller that went away meanwhile
            if not engine.conn.attached and engine.process.is_alive() and now - engine.born > 1.0:
                self.violation(f"engine {engine.process.pid} outlived the launch that was cancelled")
        registered = {c.pid for c in self.registry.all() if c.role == "engine"}
        if live != registered:
            self.violation(f"live engines {sorted(live)} != registry {sorted(registered)}")
        device = self.world.device
        if device.name != "cpu" and device.used > device.capacity:
            self.violation(f"device holds {device.used} bytes of {device.capacity}")
        for text in device.oom_with_others:
            self.violation(text)
        device.oom_with_others.clear()

    async def checker(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            self.check()

    # -- the schedule ----------------------------------------------------------------------

    def _start(self, name: str, model: str, coro: Any) -> Op:
        op = Op(name, model, self.world.loop.time(), asyncio.ensure_future(coro))
        self.ops.append(op)
        self.report.ops += 1
        return op

    def step(self) -> None:
        rng, world = self.rng, self.world
        model = rng.choice(list(self.lifecycles))
        lc = self.lifecycles[model]
        roll = rng.random()
        if roll < 0.12:  # concurrent traffic on every model, sometimes just after an engine crash
            if rng.random() < 0.5 and (alive := [e for e in world.live_engines() if e.process.is_alive()]):
                rng.choice(alive).process.die(-9)
            models = list(self.lifecycles)
            rng.shuffle(models)
            for name in models:
                for _ in range(rng.randint(1, 3)):
                    self._start("infer", name, self.lifecycles[name].infer(b"img", {}))
        elif roll < 0.55:
            keep_alive = rng.choice((None, None, None, 0.0, -1.0, 2.0))
            stream = rng.random() < 0.3
            op = self._start("infer", model, lc.infer(b"img", {}, keep_alive=keep_alive,
                                                         on_partial=(lambda _t: None) if stream else None))  # fmt: skip
            if rng.random() < 0.1:  # a client that goes away
                op.cancel_injected = True
                world.loop.call_later(rng.uniform(0, 3), op.task.cancel)
        elif roll < 0.62:
            self._start("load", model, lc.load("sim"))
        elif roll < 0.70:
            self._start("offload", model, lc.offload("sim"))
        elif roll < 0.76:
            self._start("stop", model, lc.stop_engine("sim"))
        elif roll < 0.82:
            self._start("release", model, lc.release("sim"))
        elif roll < 0.87:
            alive = [e for e in world.live_engines() if e.model == model and e.process.is_alive()]
            if alive:
                rng.choice(alive).process.die(-9)  # the OOM killer, a crash
        elif roll < 0.90:
            world.segments.unlink(lc.segment)  # someone removed /dev/shm/<segment>
        elif roll < 0.95:
            if model in world.weights_missing:
                world.weights_missing.discard(model)
            else:
                world.weights_missing.add(model)
        elif roll < 0.96 and lc.owner_alive:
            self.injected_owner_kills[model] = self.injected_owner_kills.get(model, 0) + 1
            lc._owner.cancel()  # type: ignore[union-attr]  # a fault the owner must survive
        # else: nothing happens for a while (idle expiry)

    async def drive(self) -> None:
        steps = self.rng.randint(10, 40)
        for lc in self.lifecycles.values():
            lc.start()
        checker = asyncio.ensure_future(self.checker())
        try:
            for _ in range(steps):
                self.step()
                self.check()
                await asyncio.sleep(self.rng.expovariate(1.0))
            pending = [op.task for op in self.ops]
            done, not_done = await asyncio.wait(pending, timeout=ANSWER_BOUND) if pending else (set(), set())
            for op in self.ops:
                if op.task in not_done:
                    self.violation(f"{op.name}({op.model}) never answered")
            self._judge_outcomes()
            await asyncio.sleep(self.rng.choice((0.0, 5.0, 30.0)))  # idle timers run
            self.check()
            self.closed = True
            await asyncio.wait_for(asyncio.gather(*(lc.close(grace=5.0) for lc in self.lifecycles.values())), 120)
            await asyncio.sleep(0.1)  # the last reaps
            self.check()
            self._check_closed()
        finally:
            checker.cancel()
            for op in self.ops:
                op.task.cancel()

    def _judge_outcomes(self) -> None:
        for op in self.ops:
            if not op.task.done():
                continue
            if op.task.cancelled():
                if not op.cancel_injected and op.name == "infer":
                    self.violation(f"{op.name}({op.model}) was cancelled by nobody")
                continue
            exc = op.task.exception()
            if exc is None:
                self.report.answered += 1
                continue
            name = type(exc).__name__
            self.report.errors[name] = self.report.errors.get(name, 0) + 1
            owner_killed = self.injected_owner_kills.get(op.model, 0) > 0
            if not isinstance(exc, DOCUMENTED) and not (owner_killed and name == "OwnerError"):
                self.violation(f"{op.name}({op.model}) failed with an undocumented {name}: {exc}")

    def _check_closed(self) -> None:
        for model, lc in self.lifecycles.items():
            if lc.owner_alive:
                self.violation(f"{model}: owner still running after close")
            if lc.engine is not None:
                self.violation(f"{model}: engine handle left after close")
        if self.world.live_engines():
            self.violation(f"engines alive after close: {[e.process.pid for e in self.world.live_engines()]}")
        if self.registry.all():
            self.violation(f"registry not empty after close: {[c.pid for c in self.registry.all()]}")
        if self.world.segments.sizes:
            self.violation(f"segments left after close: {sorted(self.world.segments.sizes)}")
        if self.arbiter.holders():
            self.violation(f"device leases left after close: {self.arbiter.holders()}")


def run_schedule(seed: int, sim: Simulation | None = None, drive: Any = None) -> Report:
    """Run schedule ``seed`` (or ``sim`` driven by ``drive(sim)``, a directed scenario)."""
    loop = VirtualClockLoop()
    errors = _Errors()
    root = logging.getLogger("dsocr")
    asyncio_log = logging.getLogger("asyncio")
    saved = root.level
    root.setLevel(logging.WARNING)
    root.addHandler(errors)
    asyncio_log.addHandler(errors)
    sim = sim or Simulation(seed)
    try:
        asyncio.set_event_loop(loop)
        sim.build(loop)
        try:
            loop.run_until_complete(sim.drive() if drive is None else drive(sim))
        except Stalled as exc:
            sim.violation(f"stalled: {exc}")
        except Exception as exc:  # the harness's own failure is a failed schedule too
            sim.violation(f"{type(exc).__name__}: {exc}")
        sim.report.simulated_s = loop.time()
        _cancel_all(loop)
    finally:
        root.removeHandler(errors)
        asyncio_log.removeHandler(errors)
        root.setLevel(saved)
        asyncio.set_event_loop(None)
        loop.close()
    for text in errors.found:
        sim.violation(f"log: {text}")
    return sim.report


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        try:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        except Stalled:
            pass
