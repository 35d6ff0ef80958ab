"""One owner task per model: the only code that changes a model's state, engine and timers.

Routes, timers and the CLI never touch a model: they send its owner a command (``infer``,
``load``, ``offload``, ``stop_engine``, ``release``) and await the answer. The owner runs one thing
at a time: a batch of the inference requests waiting when the engine becomes free (up to the batch
limit), or one control command. Control commands go before the next batch, so an offload or a
release waits for the running batch, not for the whole queue; requests still waiting after a
release simply load the model again. Idle expiry is decided by the owner, with the facts it alone
changes. This is llama-swap's rule and Ollama's scheduler loop (see ARCHITECTURE.md).

States: ``unloaded`` -> ``loading`` -> ``resident`` <-> ``offloading`` -> ``cached`` -> ``restoring``
-> ``resident``; ``releasing`` -> ``unloaded`` from anywhere; ``failed`` after repeated load failures
(left only by a release). A stopped or dead engine leaves a ``resident`` model ``cached`` (the
segment outlives the engine). Every change goes through ``_set`` and its table.

The owner never dies: a batch that fails fails its callers and the loop goes on; a step that
fails unexpectedly is logged and the next one runs; an owner task that ends anyway (cancelled by
someone else) is logged, its callers failed, and it is started again. Residency on a device shared
by several models is granted by ``supervisor.core.device_arbiter`` (a lease taken before a load or a
restore, given back when the model leaves the device). Time (``clock``), engines (``launcher``),
segments and the arbiter are seams: ``tests/sim`` runs this code under a virtual clock with fake
engines and NVML.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ipc import protocol as p
from ipc.errors import EngineDead, EngineFailure, item_outcome
from ipc.weights import HostSegments, segment_name
from supervisor.core.children import ChildRegistry
from supervisor.core.device_arbiter import DeviceArbiter
from supervisor.core.engine_handle import EngineHandle, Launcher
from supervisor.core.model_states import (
    ALLOWED,
    InvalidTransition,
    ModelFailed,
    OwnerError,
    QueueFull,
    RequestTimeout,
    ServiceClosing,
    State,
    path_to,
)
from supervisor.core.owner_messages import Control, PartialHandler, Request, settle
from supervisor.core.settings import Settings
from supervisor.core.transitions import EngineTransitions

__all__ = ["ALLOWED", "InvalidTransition", "ModelFailed", "ModelLifecycle", "OwnerError", "QueueFull",
           "RequestTimeout", "ServiceClosing", "State"]  # fmt: skip

log = logging.getLogger("dsocr.supervisor.lifecycle")

_STEP_RETRY_S = 0.1  # after a step failed unexpectedly: no hot loop if it keeps failing
_TIMER_SLACK_S = 1e-3


class ModelLifecycle(EngineTransitions):
    def __init__(
        self,
        model: str,
        settings: Settings,
        device: str,
        launcher: Launcher | None = None,
        arbiter: DeviceArbiter | None = None,
        registry: ChildRegistry | None = None,
        on_engine_killed: Callable[[int, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        segments: HostSegments | None = None,
        make_engine: Callable[..., EngineHandle] = EngineHandle,
    ) -> None:
        self.model = model
        self.settings = settings
        self.device = device  # resolved: "cpu" or "cuda:N"
        self.options = settings.model_options.get(model, {})
        self.segment = segment_name(os.getpid(), model)
        self.state = State.UNLOADED
        self.engine: EngineHandle | None = None
        self.launcher = launcher  # None: a plain spawn (the zygote's fork when the service has one)
        self.registry = registry if registry is not None else ChildRegistry()
        # grants residency on a device shared with other models; None: the device is ours alone
        self.arbiter = arbiter
        self.clock = clock
        self.segments = segments if segments is not None else HostSegments()
        self._make_engine = make_engine
        self.on_transition: Callable[[State, State], None] | None = None  # observers (tests/sim)
        # after a CUDA engine is killed: wait for its memory to come back (NVML)
        self._on_engine_killed = on_engine_killed
        self._requests: collections.deque[Request] = collections.deque()
        self._controls: collections.deque[Control] = collections.deque()
        self._wake = asyncio.Event()
        self._running: list[Request] = []  # the batch the engine runs now
        self._serving: Control | None = None  # the control command the owner runs now
        self._owner: asyncio.Task[None] | None = None
        self._closing = False
        self.owner_restarts = 0
        self._interrupted = False  # an owner ended mid-step: the next one recovers first
        self.last_used = clock()
        self._cached_since: float | None = None
        self._keep_alive: float | None = None  # the last request's keep_alive, until the next one
        self._fresh_engine = False  # its first inference gets a double budget (cold caches)
        self.load_failures = 0  # in a row
        self.failure: str | None = None  # why the model is `failed`, for /gpu/status and /ready
        self.refused_total = 0  # requests refused because the queue was full
        self.batch_limit = 1  # what the engine's adapter takes at once (known after a load)
        self.device_memory = {"allocated": 0, "reserved": 0}
        self.transitions: Counter[str] = Counter()
        self.transition_seconds: Counter[str] = Counter()
        self.batches: Counter[int] = Counter()  # batch size -> how many ran
        self.gpu_memory_return_s: float | None = None  # after the last CUDA engine kill (NVML)

    # -- public commands ------------------------------------------------------------------

    def start(self) -> None:
        self._owner = asyncio.create_task(self._run(), name=f"owner-{self.model}")
        self._owner.add_done_callback(self._owner_ended)

    def _owner_ended(self, task: asyncio.Task[None]) -> None:
        """The owner ends only by ``close()``; anything else is logged, answered, and restarted."""
        if self._closing or task is not self._owner:
            return
        why = "cancelled" if task.cancelled() else repr(task.exception())
        log.error("%s: owner task ended unexpectedly (%s); failing its callers and restarting it", self.model, why)
        error = OwnerError(f"{self.model}: the model's owner stopped unexpectedly; it was restarted")
        for request in self._running:
            settle(request.future, error)
        self._running = []
        if self._serving is not None:
            settle(self._serving.future, error)
            self._serving = None
        self._fail_waiting(error)
        self.owner_restarts += 1
        self._interrupted = True  # the new owner first puts the model back on solid ground
        self.start()

    async def _recover(self) -> None:
        """After an interrupted owner: no engine we cannot trust, and a state that is not half-way."""
        self._interrupted = False
        if self.state in (State.UNLOADED, State.CACHED, State.FAILED) and (self.engine is None or self.engine_alive):
            return
        await self._kill_engine()
        self._walk_to(State.CACHED if self._segment_exists() else State.UNLOADED)
        log.warning("%s: recovered to %s after its owner was interrupted", self.model, self.state.value)

    def _walk_to(self, target: State) -> None:
        """Change state to ``target`` by the shortest way ``ALLOWED`` has (every step observed)."""
        for state in path_to(self.state, target):
            self._set(state)

    @property
    def owner_alive(self) -> bool:
        return self._owner is not None and not self._owner.done()

    def admits(self) -> bool:
        """Whether a new request would find room in the queue now (checked before reading a body)."""
        return not self._closing and self._room_in_queue()

    def _room_in_queue(self) -> bool:
        # `queue_size` requests may wait behind the running batch; with none running, the first
        # waiting one is about to run and does not count
        return len(self._requests) < self.settings.queue_size + (0 if self._running else 1)

    async def infer(
        self,
        image: bytes,
        options: dict[str, Any],
        *,
        on_partial: PartialHandler | None = None,
        keep_alive: float | None = None,
    ) -> dict[str, Any]:
        """Run one inference, in arrival order, possibly batched with others.

        Raises QueueFull when too many wait, ModelFailed when the model is ``failed``. A caller
        that is cancelled (its client went away) leaves the queue, or has its result dropped.
        ``on_partial(text)`` receives text as it is generated; ``keep_alive`` (seconds; 0: offload
        right after; -1: stay resident) replaces the idle timeout until the next request.
        """
        self._check_open()
        if self.state is State.FAILED:
            raise ModelFailed(self._failed_message())
        if not self._room_in_queue():
            self.refused_total += 1
            raise QueueFull(f"{len(self._requests)} requests already waiting for {self.model}")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests.append(Request(image, options, future, on_partial, keep_alive, self.clock()))
        self._wake.set()
        return await future  # cancelled: the owner skips it (waiting) or drops its result (running)

    async def load(self, reason: str = "requested") -> bool:
        """Make the model resident now (preload); True once it is."""
        return await self._command("load", reason)

    async def offload(self, reason: str = "requested") -> bool:
        """resident -> cached; False if the model was not resident."""
        return await self._command("offload", reason)

    async def stop_engine(self, reason: str = "requested") -> bool:
        """Kill the engine: zero GPU memory; the weights stay cached. False if none ran."""
        return await self._command("stop", reason)

    async def release(self, reason: str = "requested") -> None:
        """Stop the engine and unlink the segment: nothing of the model is left anywhere."""
        await self._command("release", reason)

    async def close(self, grace: float = 30.0) -> None:
        """Service shutdown: finish the running batch, fail what waits, release everything."""
        self._closing = True
        if self._owner is not None and not self._owner.done():
            closing = asyncio.get_running_loop().create_future()
            self._controls.append(Control("close", "shutdown", closing))
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(closing), grace)
            except (asyncio.TimeoutError, Exception):
                log.warning("%s: owner did not finish within %.0fs; killing its engine", self.model, grace)
            self._owner.cancel()
            await asyncio.gather(self._owner, return_exceptions=True)
        # whatever happened above, nothing of the model may outlive the service
        await self._kill_engine()
        self.segments.unlink(self.segment)
        if self.state is not State.UNLOADED:  # cut short mid-transition: no lease, no half state
            self._walk_to(State.UNLOADED)
        closing_error = ServiceClosing("the server is shutting down")
        for request in self._running:  # a batch cut short by the grace period: answer its callers
            settle(request.future, closing_error)
        self._running = []
        self._fail_waiting(closing_error)

    def _check_open(self) -> None:
        if self._closing:
            raise ServiceClosing("the server is shutting down")

    async def _command(self, name: str, reason: str) -> Any:
        self._check_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._controls.append(Control(name, reason, future))
        self._wake.set()
        # shielded: a caller that goes away must not cancel a transition half-way
        return await asyncio.shield(future)

    # -- the owner ------------------------------------------------------------------------

    async def _run(self) -> None:
        if self._interrupted:
            await self._recover()
        while True:
            try:
                if await self._step():
                    return
            except Exception:  # never the end of the owner: whoever the step served was answered
                log.exception("%s: owner step failed; going on", self.model)
                await asyncio.sleep(_STEP_RETRY_S)

    async def _step(self) -> bool:
        """One thing: a control command, a batch, or an idle wait. True after ``close``."""
        await self._reap_dead_engine()
        if self._controls:
            control = self._serving = self._controls.popleft()
            last = await self._serve_control(control)  # answers it; cancelled: _owner_ended does
            self._serving = None
            return last
        batch = self._take_batch()
        if batch:
            await self._serve_batch(batch)
        else:
            await self._idle()
        return False

    async def _idle(self) -> None:
        """Sleep until a command or a request comes, or the next timer is due; then act on it."""
        self._wake.clear()
        if self._controls or self._requests:
            return
        due = self._next_deadline()
        timeout = None if due is None else max(0.0, due - self.clock())
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            await self._expire()

    def _idle_timeout(self) -> float | None:
        """Seconds of idleness before resident -> cached, or None for never."""
        if self._keep_alive is not None:
            return None if self._keep_alive < 0 else self._keep_alive
        s = self.settings
        if s.offload_policy == "idle" and s.idle_timeout > 0:
            return s.idle_timeout
        return None

    def _next_deadline(self) -> float | None:
        deadlines = []
        if self.state is State.RESIDENT and (idle := self._idle_timeout()) is not None:
            deadlines.append(self.last_used + idle)
        engine_idle = self.settings.engine_idle_timeout
        if self.state is State.CACHED and self.engine is not None and engine_idle > 0:
            deadlines.append(max(self._cached_since or 0.0, self.last_used) + engine_idle)
        if self.engine is not None:  # notice an engine that died while idle, within a second
            deadlines.append(self.clock() + 1.0)
        return min(deadlines) if deadlines else None

    async def _expire(self) -> None:
        """A timer is due: decide again with the facts now (the owner alone changes them)."""
        # a timer fires at its deadline give or take a rounding: without the slack, `now - last_used`
        # can fall a hair short of `idle` and the owner spins on zero-length waits (found by tests/sim)
        now = self.clock() + _TIMER_SLACK_S
        idle = self._idle_timeout()
        try:
            if self.state is State.RESIDENT and idle is not None and now - self.last_used >= idle:
                await self._offload("idle")
            elif (
                self.state is State.CACHED
                and self.engine is not None
                and self.settings.engine_idle_timeout > 0
                and now - max(self._cached_since or 0.0, self.last_used) >= self.settings.engine_idle_timeout
            ):
                await self._stop("idle")
        except Exception:  # a timer must never end the owner: log, and the next tick tries again
            log.exception("%s: idle transition failed", self.model)

    async def _serve_control(self, control: Control) -> bool:
        """Run one control command; True when it was the last (close)."""
        try:
            if control.name == "load":
                result: Any = await self._load_for_command()
            elif control.name == "offload":
                result = await self._offload(control.reason)
            elif control.name == "stop":
                result = await self._stop(control.reason)
            elif control.name == "release":
                result = await self._release(control.reason)
            elif control.name == "close":
                self._fail_waiting(ServiceClosing("the server is shutting down"))
                await self._release("shutdown")
                result = None
            else:  # pragma: no cover - names are ours
                raise ValueError(control.name)
        except Exception as exc:
            if not control.future.done():
                control.future.set_exception(exc)
            # nobody may be awaiting it (a timed-out caller): do not log "never retrieved"
            control.future.exception()
            return control.name == "close"
        if not control.future.done():
            control.future.set_result(result)
        return control.name == "close"

    async def _load_for_command(self) -> bool:
        if self.state is State.FAILED:
            raise ModelFailed(self._failed_message())
        await self._ensure_resident()
        self.last_used = self.clock()
        return True

    # -- batches --------------------------------------------------------------------------

    def _max_batch(self) -> int:
        configured = self.settings.max_batch_for(self.device)
        return max(1, min(configured, self.batch_limit))

    def _take_batch(self) -> list[Request]:
        batch: list[Request] = []
        limit = self._max_batch()
        while self._requests and len(batch) < limit:
            request = self._requests.popleft()
            if not request.future.done():  # a cancelled caller left the queue
                batch.append(request)
        return batch

    async def _serve_batch(self, batch: list[Request]) -> None:
        """Run ``batch`` and answer every one of its callers, whatever happens."""
        self._running = batch
        outcomes: list[tuple[Request, Any]] = []
        try:
            outcomes = await self._batch_outcomes(batch)
            if not self._requests:
                # before the answers: with `after-request`, a client that gets its answer finds
                # the model already cached (the upstream's behaviour)
                await self._after_batch()
        finally:
            running, self._running = self._running, []
            self.last_used = self.clock()
            for request, outcome in outcomes:
                settle(request.future, outcome)
            unanswered = OwnerError(f"{self.model}: the batch was cut short; see the server log")
            for request in running:  # an unexpected error or a cancellation: still an answer
                settle(request.future, unanswered)

    async def _batch_outcomes(self, batch: list[Request]) -> list[tuple[Request, Any]]:
        if self.state is State.FAILED:
            error = ModelFailed(self._failed_message())
            return [(request, error) for request in batch]
        try:
            engine = await self._ensure_resident()
        except Exception as exc:
            return [(request, exc) for request in batch]
        if len(batch) > self._max_batch():  # the limit is known only after the first load
            self._requests.extendleft(reversed(batch[self._max_batch() :]))
            del batch[self._max_batch() :]
        try:
            return await self._run_batch(engine, batch)
        except Exception as exc:  # not the engine's answer (an oversized frame...): these fail alone
            log.exception("%s: batch of %d failed", self.model, len(batch))
            return [(request, exc) for request in batch]

    async def _run_batch(self, engine: EngineHandle, batch: list[Request]) -> list[tuple[Request, Any]]:
        """Run ``batch`` in the engine; each request's result or error, to be settled by the caller."""
        t0 = self.clock()
        stream = any(r.on_partial is not None for r in batch)

        def partial(index: int, text: str) -> None:
            handler = batch[index].on_partial if 0 <= index < len(batch) else None
            if handler is not None and not batch[index].future.done():
                handler(text)

        msg = p.Infer(0, self.model, [r.options for r in batch], stream=stream, images=[r.image for r in batch])
        budget = self.settings.request_timeout * (2 if self._fresh_engine else 1)
        self._fresh_engine = False
        try:
            reply = await engine.request(msg, timeout=budget, on_partial=partial if stream else None)
        except asyncio.TimeoutError:
            log.error("%s: batch of %d outlived %.0fs; killing engine %s", self.model, len(batch), budget, engine.pid)
            await self._engine_lost("request timeout")
            error = RequestTimeout(f"inference took longer than {budget:g}s; the engine was restarted")
            return [(request, error) for request in batch]
        except EngineDead as exc:
            await self._engine_lost()
            return [(request, exc) for request in batch]
        except EngineFailure as exc:  # the whole message failed (not loaded, protocol...)
            return [(request, exc) for request in batch]
        seconds = self.clock() - t0
        self.batches[len(batch)] += 1
        results = reply.get("results", [])
        outcomes: list[tuple[Request, Any]] = []
        for i, request in enumerate(batch):
            result = item_outcome(results, i)
            if isinstance(result, EngineFailure):
                outcomes.append((request, result))
                continue
            self._note_memory(result)
            timing = result.setdefault("timing", {})
            timing["engine_s"] = seconds
            timing["queue_s"] = round(self.clock() - request.queued - seconds, 6)
            outcomes.append((request, result))
        if len(batch) > 1:
            log.debug("%s: batch of %d in %.3fs", self.model, len(batch), seconds)
        self._keep_alive = batch[-1].keep_alive  # the latest request's wish rules until the next
        return outcomes

    async def _after_batch(self) -> None:
        if self.state is not State.RESIDENT:
            return
        if self.settings.offload_policy == "after-request" or self._keep_alive == 0:
            await self._offload("after-request" if self._keep_alive != 0 else "keep_alive=0")

    def _fail_waiting(self, exc: BaseException) -> None:
        while self._requests:
            settle(self._requests.popleft().future, exc)
        while self._controls:
            control = self._controls.popleft()
            if control.name != "close":
                settle(control.future, exc)
