"""What the owner does to its engine and its model's state, and the read-only views of them.

``EngineTransitions`` is the half of ``ModelLifecycle`` (``supervisor.core.lifecycle``) below the
owner's loop: every state change through ``_set`` and its table, the engine's spawn, kill and
reap, the transitions (load, restore, offload, stop, release) and the status that routes and
metrics read. Only the owner task calls the underscored methods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ipc import protocol as p
from ipc.errors import EngineDead, EngineFailure
from supervisor.core.engine_handle import EngineHandle
from supervisor.core.model_states import ALLOWED, InvalidTransition, ModelFailed, State

log = logging.getLogger("dsocr.supervisor.lifecycle")

_STATS_TIMEOUT_S = 2.0
_OFFLOAD_TIMEOUT_S = 60.0
# what leaving the device means for its lease (see supervisor.core.device_arbiter)
OFF_DEVICE = frozenset({State.CACHED, State.UNLOADED, State.FAILED})


class EngineTransitions:
    """Mixed into ``ModelLifecycle``: its attributes are set in the owner's ``__init__``."""

    # -- state ----------------------------------------------------------------------------

    def _set(self, state: State) -> None:
        if state not in ALLOWED[self.state]:
            raise InvalidTransition(f"{self.model}: {self.state.value} -> {state.value}")
        before, self.state = self.state, state
        if state is State.CACHED:
            self._cached_since = self.clock()
        if self.arbiter is not None:
            if state in OFF_DEVICE:
                self.arbiter.give_back(self)
            elif state is State.RESIDENT:
                self.arbiter.settle(self)
        if self.on_transition is not None:
            self.on_transition(before, state)

    def _done(self, name: str, t0: float, detail: str = "") -> None:
        seconds = self.clock() - t0
        self.transitions[name] += 1
        self.transition_seconds[name] += seconds
        pid = self.engine.pid if self.engine else None
        extra = f" {detail}" if detail else ""
        log.info("%s %s in %.3fs (engine %s, %s)%s", self.model, name, seconds, pid, self.device, extra)

    def _failed_message(self) -> str:
        return (
            f"model {self.model} is failed after {self.load_failures} load failures in a row "
            f"({self.failure}); POST /gpu/release?model={self.model} (or a restart) lets it try again"
        )

    @property
    def engine_alive(self) -> bool:
        return self.engine is not None and self.engine.alive

    def _segment_exists(self) -> bool:
        return self.segments.exists(self.segment)

    # -- engine ---------------------------------------------------------------------------

    async def _ensure_engine(self) -> EngineHandle:
        await self._reap_dead_engine()
        if self.engine is None:
            handle = self._make_engine(
                log_level=self.settings.log_level,
                boot_timeout=self.settings.boot_timeout,
                threads=self.settings.engine_threads,
                launcher=self.launcher,
                registry=self.registry,
                model=self.model,
            )
            await handle.spawn()  # cancellation-safe: a cancelled spawn kills its child
            self.engine = handle
            self._fresh_engine = True
        return self.engine

    async def _reap_dead_engine(self) -> None:
        """An engine that died on its own: reap it; a resident model becomes cached."""
        if self.engine is not None and not self.engine.alive:
            await self._kill_engine()
            if self.state is State.RESIDENT:
                self._set(State.CACHED)

    async def _kill_engine(self, reason: str = "stop") -> None:
        engine, self.engine = self.engine, None
        self.device_memory = {"allocated": 0, "reserved": 0}
        if engine is None:
            return
        await engine.kill(reason)  # logged with the reason: a stop we asked for is not a crash
        if self._on_engine_killed is not None and engine.pid is not None and self.device.startswith("cuda"):
            await self._on_engine_killed(engine.pid, self.model)

    async def _engine_lost(self, reason: str = "lost") -> None:
        """The engine died or hung during a batch: kill it; the weights stay cached."""
        await self._kill_engine(reason)
        if self.state is State.RESIDENT:
            self._set(State.CACHED)

    def _note_memory(self, result: dict[str, Any]) -> None:
        memory = result.get("device_memory")
        if isinstance(memory, dict):
            self.device_memory = {"allocated": memory.get("allocated", 0), "reserved": memory.get("reserved", 0)}
        if "batch_limit" in result:
            self.batch_limit = max(1, int(result["batch_limit"]))

    # -- transitions ----------------------------------------------------------------------

    async def _ensure_resident(self) -> EngineHandle:
        await self._reap_dead_engine()
        if self.state is State.RESIDENT and self.engine_alive:
            return self.engine  # type: ignore[return-value]
        if self.state is State.FAILED:
            raise ModelFailed(self._failed_message())
        if self.state is State.CACHED and not self._segment_exists():
            log.warning("%s: segment %s vanished; loading again", self.model, self.segment)
            await self._kill_engine()
        restoring = self.state is State.CACHED and self._segment_exists()
        if self.arbiter is not None:
            await self.arbiter.acquire(self, self.shared_memory_bytes if restoring else None)
        try:
            if restoring:
                await self._restore()
            else:
                await self._load()
        finally:
            if self.arbiter is not None and self.state in OFF_DEVICE:
                self.arbiter.give_back(self)  # it never got on the device (cancelled before a change)
        return self.engine  # type: ignore[return-value]

    async def _load(self) -> None:
        t0 = self.clock()
        self._set(State.LOADING)
        try:
            engine = await self._ensure_engine()
            msg = p.Load(0, self.model, self.segment, self.device, self.options)
            result = await engine.request(msg, timeout=self.settings.request_timeout * 4)
        except BaseException as exc:
            # nothing half-done: no engine state we cannot trust, no half-written segment
            await self._kill_engine()
            self.segments.unlink(self.segment)
            self._load_failed(exc)
            raise
        self.load_failures, self.failure = 0, None
        self._note_memory(result)
        self._set(State.RESIDENT)
        self._done("load", t0, f"{result.get('weights_bytes', 0) / 2**20:.1f} MiB")

    def _load_failed(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            self._set(State.UNLOADED)
            return
        self.load_failures += 1
        limit = self.settings.max_load_failures
        self.failure = f"{type(exc).__name__}: {exc}"[:500]
        if limit > 0 and self.load_failures >= limit:
            self._set(State.FAILED)
            log.error("%s: failed after %d load failures in a row: %s", self.model, self.load_failures, self.failure)
        else:
            self._set(State.UNLOADED)
            log.warning("%s: load failed (%d in a row): %s", self.model, self.load_failures, self.failure)

    async def _restore(self) -> None:
        t0 = self.clock()
        self._set(State.RESTORING)
        try:
            engine = await self._ensure_engine()
            msg = p.Restore(0, self.model, self.segment, self.device, self.options)
            result = await engine.request(msg, timeout=self.settings.request_timeout)
        except BaseException:
            await self._kill_engine()
            self._set(State.CACHED)
            raise
        self._note_memory(result)
        self._set(State.RESIDENT)
        self._done("restore", t0)

    async def _offload(self, reason: str) -> bool:
        await self._reap_dead_engine()
        if self.state is not State.RESIDENT:
            return False
        t0 = self.clock()
        self._set(State.OFFLOADING)
        try:
            result = await self.engine.request(p.Offload(0, self.model), timeout=_OFFLOAD_TIMEOUT_S)  # type: ignore[union-attr]
            self._note_memory(result)
        except (EngineDead, EngineFailure, asyncio.TimeoutError) as exc:
            log.warning("%s: offload failed (%s); stopping the engine instead", self.model, exc)
            await self._kill_engine("offload failed")
        self._set(State.CACHED)
        self._done("offload", t0, f"({reason})")
        return True

    async def _stop(self, reason: str) -> bool:
        if self.engine is None:
            return False
        t0 = self.clock()
        await self._kill_engine(_why("stop", reason))
        if self.state is State.RESIDENT:
            self._set(State.CACHED)
        self._done("stop", t0, f"({reason})")
        return True

    async def _release(self, reason: str) -> None:
        t0 = self.clock()
        self._set(State.RELEASING)
        try:
            await self._kill_engine(_why("release", reason))
            self.segments.unlink(self.segment)
        finally:
            self._set(State.UNLOADED)
            self._cached_since = None
            self.load_failures, self.failure = 0, None
        self._done("release", t0, f"({reason})")

    # -- status (read-only views for routes and metrics) ----------------------------------

    @property
    def idle_time(self) -> float:
        return 0.0 if self.busy else self.clock() - self.last_used

    @property
    def busy(self) -> bool:
        return bool(self._running or self._requests)

    @property
    def model_location(self) -> str:
        if self.state in (State.RESIDENT, State.OFFLOADING):
            return "gpu" if self.device.startswith("cuda") else "cpu"
        if self.state in (State.CACHED, State.RESTORING):
            return "cpu"
        return "unloaded"

    @property
    def shared_memory_bytes(self) -> int:
        return self.segments.size(self.segment)

    async def live_device_memory(self) -> dict[str, int]:
        """The engine's allocator figures now (answered even during an inference); stored nowhere,
        so a late answer can never overwrite what a kill has just set."""
        engine = self.engine
        if engine is None or not engine.alive or not self.device.startswith("cuda"):
            return dict(self.device_memory)
        try:
            stats = await engine.request(p.Stats(0), timeout=_STATS_TIMEOUT_S)
        except (EngineDead, EngineFailure, asyncio.TimeoutError):
            return dict(self.device_memory)
        if engine is not self.engine:
            return dict(self.device_memory)
        memory = stats.get("device_memory", {}).get(self.device)
        return dict(memory) if memory else dict(self.device_memory)

    @property
    def queue_depth(self) -> int:
        """Requests waiting or running."""
        return len(self._requests) + len(self._running)

    @property
    def queue_waiting(self) -> int:
        """Requests waiting for the engine (not those it runs)."""
        return len(self._requests)


def _why(action: str, reason: str) -> str:
    """What an engine's stop log line says: ``release``, or ``stop, idle`` when it was not asked for."""
    return action if reason == "requested" else f"{action}, {reason}"
