"""``GET /ready`` for load balancers and Kubernetes, and the SIGTERM drain that turns it off first.

``/health`` says the process is alive (liveness); ``/ready`` says this instance can take work now:
it is not shutting down, no model is ``failed``, and every model's queue has room. A balancer
stops sending requests to an instance that answers 503 here, before the instance stops listening.

On SIGTERM the server (``supervisor.http.server``) keeps serving for ``--drain-seconds`` while
``/ready`` answers 503 (time for the balancer's health checks, or Kubernetes' endpoint updates, to
take the instance out), then closes the listener and lets in-flight requests finish. A second
SIGTERM skips what is left of the drain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from supervisor.core.lifecycle import State
from supervisor.core.service import SERVICE
from supervisor.http.responses import json_response

log = logging.getLogger("dsocr.supervisor")


@dataclass
class ModelLoad:
    """What readiness needs to know of one model, read from its lifecycle."""

    name: str
    state: State
    failure: str | None
    waiting: int


def unready_reasons(
    draining: bool, models: list[ModelLoad], queue_size: int, preloading: frozenset[str] = frozenset()
) -> list[str]:
    """Why the instance cannot take work now; empty when it can."""
    reasons = ["shutting down"] if draining else []
    reasons += [f"model {name} is still loading (--preload)" for name in sorted(preloading)]
    for m in models:
        if m.state is State.FAILED:
            reasons.append(f"model {m.name} failed: {m.failure or 'loads kept failing'}")
        # the lifecycle refuses a request when `queue_size` already wait behind the running one
        if m.waiting >= queue_size:
            reasons.append(f"model {m.name} queue full: {m.waiting} waiting, limit {queue_size}")
    return reasons


async def ready(request: web.Request) -> web.Response:
    """200 when this instance can take work now, else 503 with the reasons. Never waits on an engine."""
    service = request.app[SERVICE]
    models = [ModelLoad(name, lc.state, lc.failure, lc.queue_waiting) for name, lc in service.lifecycles.items()]
    reasons = unready_reasons(
        service.draining or service.closing, models, service.settings.queue_size, frozenset(service.preloading)
    )
    body: dict[str, Any] = {
        "ready": not reasons,
        "reasons": reasons,
        "models": {m.name: {"state": m.state.value, "queue_waiting": m.waiting} for m in models},
        "queue_size": service.settings.queue_size,
    }
    return json_response(body, status=503 if reasons else 200)
