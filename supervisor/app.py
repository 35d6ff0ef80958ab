"""The aiohttp application: ``make_app(settings)``; the supervisor process has no torch in it.

Resources live in cleanup contexts, so teardown runs exactly when set-up did: on start, segments
left by dead supervisors are removed and one ``ModelLifecycle`` per model is created; on stop,
every engine is stopped and every segment unlinked.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web

from ipc.weights import remove_orphans
from supervisor import gpus
from supervisor.device_room import DeviceRoom
from supervisor.errors import http_status
from supervisor.lifecycle import ModelLifecycle
from supervisor.metrics import ServiceMetrics, timing_middleware
from supervisor.security import auth_middleware, headers_middleware
from supervisor.settings import Settings

log = logging.getLogger("dsocr.supervisor")


class Service:
    """What the routes need: settings, the chosen device and one lifecycle per model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.device, self.gpu = gpus.resolve_device(settings.device)
        self.lifecycles: dict[str, ModelLifecycle] = {}
        self.room = DeviceRoom(self.lifecycles, self._gpu_free_bytes)
        for model in settings.models:
            self.lifecycles[model] = ModelLifecycle(model, settings, self.device, make_room=self.room.make_room)
        self.metrics = ServiceMetrics(lambda: self.lifecycles)

    def _gpu_free_bytes(self) -> int | None:
        if self.gpu is None:
            return None
        try:
            return next((g.free_bytes for g in gpus.list_gpus() if g.index == self.gpu.index), None)
        except gpus.NoGpu:
            return None

    @property
    def default_model(self) -> str:
        return self.settings.models[0]

    @property
    def backend(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"


SERVICE = web.AppKey("service", Service)
SETTINGS = web.AppKey("settings", Settings)


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)  # fmt: skip


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
        response = json_response({"success": False, "error": exc.reason, "request_id": request_id},
                                 status=exc.status)  # fmt: skip
    except Exception as exc:
        status, message, headers = http_status(exc)
        if status >= 500 and status != 503:
            log.error("%s %s -> %d [%s]: %s", request.method, request.path, status, request_id,
                      message, exc_info=status == 500)  # fmt: skip
        else:
            log.info("%s %s -> %d [%s]: %s", request.method, request.path, status, request_id, message)
        response = json_response({"success": False, "error": message, "request_id": request_id},
                                 status=status, headers=headers)  # fmt: skip
    response.headers["X-Request-ID"] = request_id
    return response


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    removed = remove_orphans()
    if removed:
        log.info("removed %d segments left by dead supervisors: %s", len(removed), ", ".join(removed))
    service = Service(app[SETTINGS])
    gpu = service.gpu
    log.info("device %s%s; models %s; idle timeout %gs, engine idle timeout %gs, offload policy %s",
             service.device, f" ({gpu.name}, {gpu.used_bytes / 2**20:.0f} MiB used)" if gpu else "",
             ", ".join(service.lifecycles), service.settings.idle_timeout,
             service.settings.engine_idle_timeout, service.settings.offload_policy)  # fmt: skip
    app[SERVICE] = service
    for lifecycle in service.lifecycles.values():
        lifecycle.start()
    yield
    for lifecycle in service.lifecycles.values():
        await lifecycle.close()


def make_app(settings: Settings) -> web.Application:
    from supervisor import routes

    def metrics() -> ServiceMetrics | None:
        service = app.get(SERVICE)
        return service.metrics if service else None

    # outermost first: timing sees the final status, headers go on errors too, auth errors are JSON
    middlewares = [
        timing_middleware(metrics),
        headers_middleware(settings.cors_origins),
        error_middleware,
        auth_middleware(settings.api_key),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_upload_bytes + 2**20)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_service_ctx)
    routes.add_routes(app)
    return app
