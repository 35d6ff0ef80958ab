"""HTTP routes: the seed's endpoints with its fields unchanged, plus a few of our own.

No route talks to an engine: each asks a model's owner task (``supervisor.lifecycle``).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ipc.catalog import model_info
from supervisor import readiness
from supervisor.body_budget import expect_continue
from supervisor.documents import read_pages
from supervisor.errors import ClientError
from supervisor.forms import read_form, upstream_fields
from supervisor.gpus import process_gpu_bytes
from supervisor.lifecycle import ModelLifecycle, QueueFull
from supervisor.ocr_documents import document_response, requested_output
from supervisor.request_log import log_ocr
from supervisor.responses import json_response
from supervisor.results import pdf_body, result_body
from supervisor.service import SERVICE, Service

log = logging.getLogger("dsocr.supervisor")

WEB_DIR = Path(__file__).parent / "web"
_GIB = 2**30
# text fields of /ocr passed to the model as options
OPTION_FIELDS = ("prompt_type", "find_term", "custom_prompt", "grounding", "max_tokens", "layout")


def lifecycle_for(service: Service, model: str | None) -> ModelLifecycle:
    name = model or service.default_model
    try:
        return service.lifecycles[name]
    except KeyError:
        raise ClientError(400, f"unknown model {name!r}; this server runs: {', '.join(service.lifecycles)}") from None


def _targets(service: Service, request: web.Request) -> list[ModelLifecycle]:
    model = request.query.get("model")
    return [lifecycle_for(service, model)] if model else list(service.lifecycles.values())


def _lifecycle_fields(service: Service, lc: ModelLifecycle, memory: dict[str, int]) -> dict[str, Any]:
    return {
        "backend": service.backend,
        "model_location": lc.model_location,
        "idle_time": round(lc.idle_time, 3),
        "device": service.device,
        "timeout": service.settings.idle_timeout,
        "gpu_memory_allocated": round(memory.get("allocated", 0) / _GIB, 4),
        "gpu_memory_reserved": round(memory.get("reserved", 0) / _GIB, 4),
    }


async def health(request: web.Request) -> web.Response:
    """Answers at once, even while the engine works: nothing here waits on the engine."""
    service = request.app[SERVICE]
    lc = service.lifecycles[service.default_model]
    body = {
        "status": "healthy",
        "platform": platform.system(),  # the upstream's value: "Linux"
        "gpu_manager": True,
        **_lifecycle_fields(service, lc, lc.device_memory),
    }
    return json_response(body)


def _catalog_fields(lc: ModelLifecycle) -> dict[str, Any]:
    """A model's tasks from the catalog, known before it loads (the page enables them at once)."""
    info = model_info(lc.model)
    if info is None:
        return {"prompt_types": []}
    return {"prompt_types": list(info.prompt_types), "find_term": list(info.find_term),
            "custom_prompt": list(info.custom_prompt), "grounding": info.grounding}  # fmt: skip


async def _model_status(service: Service, lc: ModelLifecycle) -> dict[str, Any]:
    memory = await lc.live_device_memory()
    engine_pid = lc.engine.pid if lc.engine_alive and lc.engine is not None else None
    gpu_bytes = await asyncio.to_thread(process_gpu_bytes, engine_pid) if service.backend == "cuda" else 0
    return {
        "model": lc.model,
        "state": lc.state.value,
        **_lifecycle_fields(service, lc, memory),
        "engine_pid": engine_pid,
        "engine_gpu_memory_bytes": gpu_bytes,
        "shared_memory_bytes": lc.shared_memory_bytes,
        "queue_depth": lc.queue_depth,
        "queue_waiting": lc.queue_waiting,
        "max_batch": max(1, min(service.settings.max_batch_for(service.device), lc.batch_limit)),
        "failure": lc.failure,
        "load_failures": lc.load_failures,
        **_catalog_fields(lc),
        "offload_policy": service.settings.offload_policy,
        "engine_idle_timeout": service.settings.engine_idle_timeout,
    }


async def gpu_status(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    models = [await _model_status(service, lc) for lc in service.lifecycles.values()]
    body = dict(models[0])  # the seed's fields, for the default model
    body["models"] = models
    body.update(service.children_status())
    if service.gpu is not None:
        body["gpu"] = {"index": service.gpu.index, "name": service.gpu.name}
    return json_response(body)


async def gpu_offload(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    done = [lc.model for lc in _targets(service, request) if await lc.offload("requested")]
    message = f"offloaded {', '.join(done)}" if done else "nothing was resident"
    return json_response({"status": "offloaded", "message": message, "models": done})


async def gpu_release(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    targets = _targets(service, request)
    for lc in targets:
        await lc.release("requested")
    names = ", ".join(lc.model for lc in targets)
    return json_response({"status": "released", "message": f"released {names}: engine stopped, shared memory freed"})


async def gpu_stop(request: web.Request) -> web.Response:
    """Stop the engines (zero GPU memory) but keep the weights cached for a fast restore."""
    service = request.app[SERVICE]
    done = [lc.model for lc in _targets(service, request) if await lc.stop_engine("requested")]
    message = f"stopped the engine of {', '.join(done)}" if done else "no engine was running"
    return json_response({"status": "stopped", "message": message, "models": done})


async def gpu_load(request: web.Request) -> web.Response:
    """Make models resident ahead of use (preload); answers once they are."""
    service = request.app[SERVICE]
    targets = _targets(service, request)
    t0 = time.perf_counter()
    for lc in targets:
        await lc.load("requested")
    names = [lc.model for lc in targets]
    return json_response(
        {"status": "loaded", "message": f"resident: {', '.join(names)}", "models": names,
         "seconds": round(time.perf_counter() - t0, 3)}
    )  # fmt: skip


def admit(lc: ModelLifecycle) -> None:
    """Refuse before the body is read when the model's queue is already full (503, Retry-After)."""
    if not lc.admits():
        lc.refused_total += 1
        raise QueueFull(f"{lc.queue_waiting} requests already waiting for {lc.model}")


def parse_keep_alive(raw: Any) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ClientError(
            400, f"keep_alive must be a number of seconds (0: offload after, -1: stay), not {raw!r}"
        ) from None
    if value != value or value < -1:
        raise ClientError(400, "keep_alive must be -1 (stay resident), 0 (offload right after) or seconds")
    return value


async def ocr(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    settings = service.settings
    # the queue is checked before a large body is read: a full server costs a client nothing
    admit(lifecycle_for(service, request.query.get("model")))
    form = await read_form(request, settings)
    form.fields = upstream_fields(form.fields)  # the upstream web UI's `mode`, `search_text`
    lc = lifecycle_for(service, form.fields.get("model") or request.query.get("model"))
    options = {k: form.fields[k] for k in OPTION_FIELDS if k in form.fields}
    options.setdefault("prompt_type", "ocr")
    keep_alive = parse_keep_alive(form.fields.get("keep_alive"))
    output = requested_output(request.query, form.fields)  # json | hocr | alto | pdf
    t0 = time.perf_counter()
    pages = [page async for page in read_pages(lc, settings, form.data, options, keep_alive=keep_alive)]
    if len(pages) == 1 and pages[0].count == 1 and not form.is_pdf:
        body = result_body(pages[0].result)
    else:
        body = pdf_body([p.result for p in pages], [p.number for p in pages])
    body.update(
        success=True,
        prompt_type=options["prompt_type"],
        metadata={
            "model": lc.model,
            "device": service.device,
            "filename": form.filename,
            "size_bytes": len(form.data),
            "request_id": request["request_id"],
            "timing": body.pop("timing"),
        },
    )
    log_ocr(lc.model, len(pages), time.perf_counter() - t0, 200, request["request_id"])
    if output != "json":
        return await document_response(output, body, form.data, form.filename)
    return json_response(body)


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if not page.exists():
        return web.Response(text="dsocr is running. POST an image to /ocr.", content_type="text/plain")
    return web.FileResponse(page)


async def static(request: web.Request) -> web.StreamResponse:
    """Files of the page; a missing one is a JSON 404 like every other error (aiohttp's static
    route answers an empty octet-stream 404 from inside the file response)."""
    root = WEB_DIR.resolve()
    try:
        path = (root / request.match_info["path"]).resolve()
        found = root in path.parents and path.is_file()
    except (ValueError, OSError):  # a NUL byte ("/static/%00"), a name too long: no such file
        found = False
    if not found:
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def metrics(request: web.Request) -> web.Response:
    return request.app[SERVICE].metrics.render()


def add_routes(app: web.Application) -> None:
    from supervisor import ocr_stream  # it uses this module: imported here, not at the top

    ocr_stream.add_routes(app)  # /ocr/stream (NDJSON per page)
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", readiness.ready)
    app.router.add_get("/gpu/status", gpu_status)
    app.router.add_post("/gpu/offload", gpu_offload)
    app.router.add_post("/gpu/release", gpu_release)
    app.router.add_post("/gpu/stop", gpu_stop)
    app.router.add_post("/gpu/load", gpu_load)
    app.router.add_post("/ocr", ocr, expect_handler=expect_continue)
    app.router.add_get("/static/{path:.+}", static)
    from supervisor.client_routes import add_client_routes  # imports this module: here, not at the top

    add_client_routes(app)
