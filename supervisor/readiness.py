"""``GET /ready`` for load balancers and Kubernetes, and the SIGTERM drain that turns it off first.

``/health`` says the process is alive (liveness); ``/ready`` says this instance can take work now:
it is not shutting down, no model is ``failed``, and every model's queue has room. A balancer
stops sending requests to an instance that answers 503 here, before the instance stops listening.

On SIGTERM the server keeps serving for ``drain_seconds`` while ``/ready`` answers 503 (time for
the balancer's health checks, or Kubernetes' endpoint updates, to take the instance out), then
aiohttp's graceful shutdown closes the listener and lets in-flight requests finish. A second
SIGTERM skips what is left of the drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from supervisor.app import SERVICE, json_response
from supervisor.lifecycle import State

log = logging.getLogger("dsocr.supervisor")


@dataclass
class ModelLoad:
    """What readiness needs to know of one model, read from its lifecycle."""

    name: str
    state: State
    failure: str | None
    waiting: int


def unready_reasons(draining: bool, models: list[ModelLoad], queue_size: int) -> list[str]:
    """Why the instance cannot take work now; empty when it can."""
    reasons = ["shutting down"] if draining else []
    for m in models:
        if m.state is State.FAILED:
            reasons.append(f"model {m.name} failed: {m.failure or 'loads kept failing'}")
        # the lifecycle refuses a request when `queue_size` already wait behind the running one
        if m.waiting >= queue_size:
            reasons.append(f"model {m.name} queue full: {m.waiting} waiting, limit {queue_size}")
    return reasons


class Drain:
    """Whether this instance is shutting down; ``begin`` starts the drain (a SIGTERM does)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.draining = False
        self._exit: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        loop = asyncio.get_running_loop()
        if self.draining:  # a second SIGTERM: stop waiting
            log.info("second SIGTERM: shutting down now")
            self._schedule_exit(loop, 0.0)
            return
        self.draining = True
        log.info("SIGTERM: /ready answers 503; still serving for %gs, then graceful shutdown", self.seconds)
        self._schedule_exit(loop, self.seconds)

    def _schedule_exit(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        if self._exit is not None:
            self._exit.cancel()
        # GracefulExit raised from a loop callback ends run_app the way aiohttp's own handler does
        self._exit = loop.call_later(delay, _raise_graceful_exit)


def _raise_graceful_exit() -> None:
    raise GracefulExit()


DRAIN = web.AppKey("drain", Drain)


def install_drain(app: web.Application, seconds: float) -> None:
    """Make SIGTERM drain for ``seconds`` before the graceful shutdown (``dsocr serve`` does this)."""
    app[DRAIN] = Drain(seconds)

    async def take_sigterm(app: web.Application) -> None:
        # on_startup runs after run_app has installed its handlers: this one replaces SIGTERM's
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, app[DRAIN].begin)

    app.on_startup.append(take_sigterm)


async def ready(request: web.Request) -> web.Response:
    """200 when this instance can take work now, else 503 with the reasons. Never waits on an engine."""
    service = request.app[SERVICE]
    drain = request.app.get(DRAIN)
    models = [ModelLoad(name, lc.state, lc.failure, lc.queue_waiting) for name, lc in service.lifecycles.items()]
    reasons = unready_reasons(drain is not None and drain.draining, models, service.settings.queue_size)
    body: dict[str, Any] = {
        "ready": not reasons,
        "reasons": reasons,
        "models": {m.name: {"state": m.state.value, "queue_waiting": m.waiting} for m in models},
        "queue_size": service.settings.queue_size,
    }
    return json_response(body, status=503 if reasons else 200)
