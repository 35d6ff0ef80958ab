"""One state machine per model: the only code that changes a model's state.

Every transition and every inference runs under the model's lock, one at a time, so an offload,
release or idle timer that comes during an inference waits for it to end. Callers ask for an
outcome (``infer``, ``offload``, ``release``, ``stop_engine``) and never act on a state they read.

States (ARCHITECTURE.md): ``unloaded`` -> ``loading`` -> ``resident`` <-> ``offloading`` ->
``cached`` -> ``restoring`` -> ``resident``; ``releasing`` -> ``unloaded`` from anywhere. A stopped
or dead engine leaves a ``resident`` model ``cached`` (the segment outlives the engine).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ipc import protocol as p
from ipc.weights import SHM_DIR, segment_name, unlink_segment
from supervisor.engine_handle import EngineDead, EngineFailure, EngineHandle
from supervisor.settings import Settings

log = logging.getLogger("dsocr.supervisor.lifecycle")

_TICK_S = 0.2  # how often idle timers are checked
_STATS_TIMEOUT_S = 2.0


class State(str, enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    CACHED = "cached"
    RESTORING = "restoring"
    RESIDENT = "resident"
    OFFLOADING = "offloading"
    RELEASING = "releasing"
    FAILED = "failed"  # loads kept failing: requests get 503 until a release or a restart


ALLOWED: dict[State, set[State]] = {
    State.UNLOADED: {State.LOADING, State.RELEASING},
    State.LOADING: {State.RESIDENT, State.UNLOADED, State.FAILED},
    State.RESIDENT: {State.OFFLOADING, State.CACHED, State.RELEASING},
    State.OFFLOADING: {State.CACHED},
    State.CACHED: {State.RESTORING, State.LOADING, State.RELEASING},
    State.RESTORING: {State.RESIDENT, State.CACHED},
    State.RELEASING: {State.UNLOADED},
    State.FAILED: {State.RELEASING},
}


class InvalidTransition(RuntimeError):
    pass


class QueueFull(RuntimeError):
    """More requests are waiting than the queue holds."""


class RequestTimeout(RuntimeError):
    """An inference outlived the request timeout; its engine was killed."""


async def _no_room_needed(lifecycle: ModelLifecycle, needed_bytes: int | None) -> None:
    return None


class ModelLifecycle:
    def __init__(
        self, model: str, settings: Settings, device: str,
        spawn_engine: Callable[[], Awaitable[EngineHandle]] | None = None,
        make_room: Callable[[ModelLifecycle, int | None], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self.model = model
        self.settings = settings
        self.device = device  # resolved: "cpu" or "cuda:N"
        self.options = settings.model_options.get(model, {})
        self.segment = segment_name(os.getpid(), model)
        self.state = State.UNLOADED
        self.engine: EngineHandle | None = None
        self._spawn_engine = spawn_engine or self._default_spawn
        # asks the service to offload other models from the device first (several models)
        self._make_room = make_room or _no_room_needed
        self._lock = asyncio.Lock()
        self._pending = 0  # requests waiting or running
        self.failure: str | None = None  # why the model is `failed`, for /gpu/status and /ready
        self.refused_total = 0  # requests refused because the queue was full
        self.last_used = time.monotonic()
        self._cached_since: float | None = None
        self.device_memory = {"allocated": 0, "reserved": 0}
        self.prompt_types: list[str] = []
        self.transitions: Counter[str] = Counter()
        self.transition_seconds: Counter[str] = Counter()
        self._watcher: asyncio.Task[None] | None = None
        # an engine spawned ahead of need after a stop: torch imported, segment mapped, no CUDA
        self._standby: asyncio.Task[EngineHandle] | None = None

    # -- state ----------------------------------------------------------------------------

    def _set(self, state: State) -> None:
        if state not in ALLOWED[self.state]:
            raise InvalidTransition(f"{self.model}: {self.state.value} -> {state.value}")
        self.state = state
        if state is State.CACHED:
            self._cached_since = time.monotonic()

    def _done(self, name: str, t0: float, detail: str = "") -> None:
        seconds = time.perf_counter() - t0
        self.transitions[name] += 1
        self.transition_seconds[name] += seconds
        pid = self.engine.pid if self.engine else None
        log.info("%s %s in %.3fs (engine %s, %s)%s", self.model, name, seconds, pid, self.device,
                 f" {detail}" if detail else "")  # fmt: skip

    @property
    def engine_alive(self) -> bool:
        return self.engine is not None and self.engine.alive

    def _segment_exists(self) -> bool:
        return (SHM_DIR / self.segment).exists()

    # -- engine ---------------------------------------------------------------------------

    async def _default_spawn(self) -> EngineHandle:
        handle = EngineHandle(log_level=self.settings.log_level, boot_timeout=self.settings.boot_timeout,
                              threads=self.settings.engine_threads)  # fmt: skip
        await handle.spawn()
        return handle

    async def _ensure_engine(self) -> EngineHandle:
        if self.engine is not None and not self.engine.alive:
            await self.engine.kill()  # reap the dead one
            self.engine = None
        if self.engine is None:
            self.engine = await self._take_standby()
        if self.engine is None:
            self.engine = await self._spawn_engine()
        return self.engine

    def _start_standby(self) -> None:
        """Spawn a standby engine for the cached weights (``--standby``), in the background."""
        if self.settings.standby and self._standby is None and self._segment_exists():
            self._standby = asyncio.create_task(self._spawn_standby(), name=f"standby-{self.model}")

    async def _spawn_standby(self) -> EngineHandle:
        t0 = time.perf_counter()
        handle = await self._spawn_engine()
        try:
            await handle.request(p.Prepare(0, self.model, self.segment, self.options),
                                 timeout=self.settings.boot_timeout)  # fmt: skip
        except BaseException:
            await handle.kill()
            raise
        log.info("%s standby engine %d ready in %.3fs", self.model, handle.pid, time.perf_counter() - t0)
        return handle

    async def _take_standby(self) -> EngineHandle | None:
        task, self._standby = self._standby, None
        if task is None:
            return None
        try:
            handle = await task
        except Exception as exc:  # a failed standby only costs the time of a normal spawn
            log.warning("%s: standby engine failed (%s); spawning a new one", self.model, exc)
            return None
        return handle if handle.alive else None

    async def _drop_standby(self) -> None:
        task, self._standby = self._standby, None
        if task is None:
            return
        task.cancel()
        try:
            handle = await task
        except BaseException:
            return
        await handle.kill()

    async def _kill_engine(self) -> None:
        if self.engine is not None:
            await self.engine.kill()
            self.engine = None
        self.device_memory = {"allocated": 0, "reserved": 0}

    def _note_memory(self, result: dict[str, Any]) -> None:
        if "prompt_types" in result:  # known once the engine has the model's adapter
            self.prompt_types = list(result["prompt_types"])
        memory = result.get("device_memory")
        if isinstance(memory, dict):
            self.device_memory = {"allocated": memory.get("allocated", 0), "reserved": memory.get("reserved", 0)}

    # -- making the model resident ----------------------------------------------------------

    async def _ensure_resident(self) -> EngineHandle:
        if self.state is State.RESIDENT and self.engine_alive:
            return self.engine  # type: ignore[return-value]
        if self.state is State.RESIDENT:  # its engine died: the weights are still in the segment
            await self._kill_engine()
            self._set(State.CACHED)
        if self.state is State.CACHED and not self._segment_exists():
            log.warning("%s: segment %s vanished; loading again", self.model, self.segment)
            await self._kill_engine()
        restoring = self.state is State.CACHED and self._segment_exists()
        await self._make_room(self, self.shared_memory_bytes if restoring else None)
        if restoring:
            await self._restore()
        else:
            await self._load()
        return self.engine  # type: ignore[return-value]

    async def _load(self) -> None:
        t0 = time.perf_counter()
        self._set(State.LOADING)
        try:
            engine = await self._ensure_engine()
            msg = p.Load(0, self.model, self.segment, self.device, self.options)
            result = await engine.request(msg, timeout=self.settings.request_timeout * 4)
        except BaseException:
            # nothing half-done: no engine state we cannot trust, no half-written segment
            await self._kill_engine()
            unlink_segment(self.segment)
            self.state = State.UNLOADED
            raise
        self._note_memory(result)
        self._set(State.RESIDENT)
        self._done("load", t0, f"{result.get('weights_bytes', 0) / 2**20:.1f} MiB")

    async def _restore(self) -> None:
        t0 = time.perf_counter()
        self._set(State.RESTORING)
        try:
            engine = await self._ensure_engine()
            msg = p.Restore(0, self.model, self.segment, self.device, self.options)
            result = await engine.request(msg, timeout=self.settings.request_timeout)
        except BaseException:
            await self._kill_engine()
            self.state = State.CACHED
            raise
        self._note_memory(result)
        self._set(State.RESIDENT)
        self._done("restore", t0)

    # -- requests -------------------------------------------------------------------------

    async def infer(self, image: bytes, options: dict[str, Any]) -> dict[str, Any]:
        """Run one inference, in arrival order; raises QueueFull when too many wait."""
        if self._pending > self.settings.queue_size:
            self.refused_total += 1
            raise QueueFull(f"{self._pending} requests already waiting for {self.model}")
        self._pending += 1
        try:
            # shielded: a client that goes away must not cancel a transition half-way
            return await asyncio.shield(self._infer_locked(image, options))
        finally:
            self._pending -= 1
            self.last_used = time.monotonic()

    async def _infer_locked(self, image: bytes, options: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            engine = await self._ensure_resident()
            t0 = time.perf_counter()
            msg = p.Infer(0, self.model, options, image)
            try:
                result = await engine.request(msg, timeout=self.settings.request_timeout)
            except asyncio.TimeoutError:
                log.error("%s: inference outlived %.0fs; killing engine %s",
                          self.model, self.settings.request_timeout, engine.pid)  # fmt: skip
                await self._kill_engine()
                self._set(State.CACHED)
                self._start_standby()
                raise RequestTimeout(
                    f"inference took longer than {self.settings.request_timeout:g}s; the engine was restarted"
                ) from None
            except EngineDead:
                await self._kill_engine()
                self._set(State.CACHED)
                self._start_standby()
                raise
            self._note_memory(result)
            result.setdefault("timing", {})["engine_s"] = time.perf_counter() - t0
            if self.settings.offload_policy == "after-request" and self._pending <= 1:
                await self._offload("after-request")
            return result

    # -- transitions asked for from outside -----------------------------------------------

    async def offload(self, reason: str = "requested") -> bool:
        """resident -> cached; False if the model was not resident."""
        async with self._lock:
            return await self._offload(reason)

    async def _offload(self, reason: str) -> bool:
        if self.state is not State.RESIDENT:
            return False
        if not self.engine_alive:
            await self._kill_engine()
            self._set(State.CACHED)
            return True
        t0 = time.perf_counter()
        self._set(State.OFFLOADING)
        try:
            result = await self.engine.request(p.Offload(0, self.model), timeout=60)  # type: ignore[union-attr]
            self._note_memory(result)
        except (EngineDead, EngineFailure, asyncio.TimeoutError) as exc:
            log.warning("%s: offload failed (%s); stopping the engine instead", self.model, exc)
            await self._kill_engine()
        self._set(State.CACHED)
        self._done("offload", t0, f"({reason})")
        return True

    async def stop_engine(self, reason: str = "requested") -> bool:
        """Kill the engine: zero GPU memory; the weights stay cached. False if none ran."""
        async with self._lock:
            if self.engine is None:
                return False
            t0 = time.perf_counter()
            await self._kill_engine()
            if self.state is State.RESIDENT:
                self._set(State.CACHED)
            self._done("stop", t0, f"({reason})")
            self._start_standby()
            return True

    async def release(self, reason: str = "requested") -> None:
        """Stop the engine and unlink the segment: nothing of the model is left anywhere."""
        async with self._lock:
            t0 = time.perf_counter()
            self.state = State.RELEASING  # from any state: release is the way out of everything
            try:
                await self._drop_standby()
                await self._kill_engine()
                unlink_segment(self.segment)
            finally:
                self.state = State.UNLOADED
                self._cached_since = None
            self._done("release", t0, f"({reason})")

    # -- idle timers ----------------------------------------------------------------------

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch_idle(), name=f"idle-{self.model}")

    async def _watch_idle(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(_TICK_S)
            if self._pending:
                continue
            idle = time.monotonic() - self.last_used
            try:
                if (s.offload_policy == "idle" and s.idle_timeout > 0 and idle >= s.idle_timeout
                        and self.state is State.RESIDENT):  # fmt: skip
                    await self.offload("idle")
                elif (s.engine_idle_timeout > 0 and self.state is State.CACHED and self.engine is not None
                        and self._cached_since is not None
                        and time.monotonic() - max(self._cached_since, self.last_used) >= s.engine_idle_timeout):  # fmt: skip
                    await self.stop_engine("idle")
            except Exception:  # a timer must never die: log and try again next tick
                log.exception("%s: idle transition failed", self.model)

    async def close(self) -> None:
        """Stop timers, the engine and the segment (service shutdown)."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.release("shutdown")

    # -- status ---------------------------------------------------------------------------

    @property
    def idle_time(self) -> float:
        return 0.0 if self._pending else time.monotonic() - self.last_used

    @property
    def model_location(self) -> str:
        if self.state in (State.RESIDENT, State.OFFLOADING):
            return "gpu" if self.device.startswith("cuda") else "cpu"
        if self.state in (State.CACHED, State.RESTORING):
            return "cpu"
        return "unloaded"

    @property
    def shared_memory_bytes(self) -> int:
        try:
            return (SHM_DIR / self.segment).stat().st_size
        except OSError:
            return 0

    async def live_device_memory(self) -> dict[str, int]:
        """The engine's allocator figures now (answered even during an inference)."""
        engine = self.engine
        if engine is None or not engine.alive or not self.device.startswith("cuda"):
            return self.device_memory if engine is not None else {"allocated": 0, "reserved": 0}
        try:
            stats = await engine.request(p.Stats(0), timeout=_STATS_TIMEOUT_S)
            memory = stats.get("device_memory", {}).get(self.device)
            if memory:
                self.device_memory = memory
        except (EngineDead, EngineFailure, asyncio.TimeoutError):
            pass
        return self.device_memory

    @property
    def standby_pid(self) -> int | None:
        task = self._standby
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result().pid

    @property
    def queue_depth(self) -> int:
        """Requests waiting or running."""
        return self._pending

    @property
    def queue_waiting(self) -> int:
        """Requests waiting for the engine (not the one it runs)."""
        return max(0, self._pending - 1)
