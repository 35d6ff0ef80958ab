"""The aiohttp application: ``make_app(settings)``; the supervisor process has no torch in it.

Resources live in cleanup contexts, so teardown runs exactly when set-up did: on start, segments
left by dead supervisors are removed and the ``Service`` (one owner task per model) starts; on
stop, every engine is stopped and every segment unlinked.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from ipc.weights import remove_orphans
from supervisor.api import mistral, native, native_stream, upstream
from supervisor.api.openai import routes as openai
from supervisor.api.openapi import routes as openapi
from supervisor.core.metrics import ServiceMetrics, timing_middleware
from supervisor.core.service import SERVICE, SETTINGS, Service
from supervisor.core.settings import Settings
from supervisor.http.body_budget import BODY_BUDGET, BodyBudget, body_budget_middleware
from supervisor.http.errors import CLIENT_GONE, http_status
from supervisor.http.responses import json_response
from supervisor.http.security import auth_middleware, headers_middleware
from supervisor.http.server import SERVER_NAME

log = logging.getLogger("dsocr.supervisor")

# the dialects whose routes the app serves, each registering its own (``add_routes``); a path
# two of them claim goes to the first
DIALECTS = (native_stream, native, openai, mistral, upstream, openapi)

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error leaves as JSON ``{"success": false, "error"}`` with the request id; no tracebacks."""
    given = request.headers.get("X-Request-ID", "")
    # a client's id is echoed in headers, JSON and logs: only visible ASCII, and not too long
    request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    request["request_id"] = request_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 404 else f"no such route: {request.method} {request.path}"[:300]
        response = json_response(
            {"success": False, "error": message, "request_id": request_id}, status=exc.status, headers=_allow(exc)
        )
    except Exception as exc:
        status, message, headers = http_status(exc)
        if status == CLIENT_GONE:  # one line, no traceback, and counted as 499, not 500
            log.info("%s %s -> client went away [%s]: %s", request.method, request.path, request_id, exc)
        elif status >= 500 and status not in (502, 503, 504, 507):
            log.error("%s %s -> %d [%s]: %s", request.method, request.path, status, request_id, message,
                      exc_info=status == 500)  # fmt: skip
        else:
            log.info("%s %s -> %d [%s]: %s", request.method, request.path, status, request_id, message)
        response = json_response(
            {"success": False, "error": message, "request_id": request_id}, status=status, headers=headers
        )
    response.headers["X-Request-ID"] = request_id
    return response


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME  # no version banner


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    removed = remove_orphans()
    if removed:
        log.info("removed %d segments left by dead supervisors: %s", len(removed), ", ".join(removed))
    service = app[SERVICE]
    gpu = service.gpu
    log.info("device %s%s; models %s; idle timeout %gs, engine idle timeout %gs, offload policy %s, max batch %d",
             service.device, f" ({gpu.name}, {gpu.used_bytes / 2**20:.0f} MiB used)" if gpu else "",
             ", ".join(service.lifecycles), service.settings.idle_timeout,
             service.settings.engine_idle_timeout, service.settings.offload_policy,
             service.settings.max_batch_for(service.device))  # fmt: skip
    service.start()
    yield
    await service.close()


def make_app(settings: Settings, service: Service | None = None) -> web.Application:
    """The application; the ``Service`` is made here (its checks raise ``ConfigError`` before
    anything listens) unless one is given."""
    service = service or Service(settings)
    budget = BodyBudget(settings.upload_budget_bytes)

    def metrics() -> ServiceMetrics | None:
        return service.metrics

    # outermost first: timing sees the final status, headers go on errors too, auth errors are JSON
    middlewares = [
        timing_middleware(metrics),
        headers_middleware(settings.cors_origins),
        error_middleware,
        auth_middleware(settings.api_key),
        body_budget_middleware(budget, settings),  # after auth: a stranger reserves nothing
    ]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_upload_bytes + 2**20)
    app[SETTINGS] = settings
    app[SERVICE] = service
    app[BODY_BUDGET] = budget
    if service.metrics is not None:
        service.metrics.watch_uploads(lambda: budget.in_flight, budget.limit_bytes, lambda: budget.refused)
    app.on_response_prepare.append(_server_header)
    app.cleanup_ctx.append(_service_ctx)
    for dialect in DIALECTS:
        dialect.add_routes(app)
    return app
