"""HTTP routes: the seed's endpoints with its fields unchanged, plus a few of our own."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from ipc.catalog import model_info
from supervisor.app import SERVICE, Service, json_response
from supervisor.errors import ClientError
from supervisor.gpus import process_gpu_bytes
from supervisor.lifecycle import ModelLifecycle
from supervisor.pdf import is_pdf, render_pdf
from supervisor.results import pdf_body, result_body
from supervisor.uploads import inspect_image

WEB_DIR = Path(__file__).parent / "web"
_GIB = 2**30
# text fields of /ocr passed to the model as options
_OPTION_FIELDS = ("prompt_type", "find_term", "custom_prompt", "grounding")
_MAX_FIELD_BYTES = 64 * 1024


def _lifecycle(service: Service, model: str | None) -> ModelLifecycle:
    name = model or service.default_model
    try:
        return service.lifecycles[name]
    except KeyError:
        raise ClientError(400, f"unknown model {name!r}; this server runs: {', '.join(service.lifecycles)}") from None


def _targets(service: Service, request: web.Request) -> list[ModelLifecycle]:
    model = request.query.get("model")
    return [_lifecycle(service, model)] if model else list(service.lifecycles.values())


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
        "platform": f"{platform.system()} {platform.machine()}",
        "gpu_manager": "enabled",
        **_lifecycle_fields(service, lc, lc.device_memory),
    }
    return json_response(body)


def _catalog_fields(lc: ModelLifecycle) -> dict[str, Any]:
    """A model's tasks from the catalog, known before it loads (the page enables them at once)."""
    info = model_info(lc.model)
    if info is None:
        return {"prompt_types": lc.prompt_types}
    return {"prompt_types": list(info.prompt_types), "find_term": list(info.find_term),
            "custom_prompt": list(info.custom_prompt), "grounding": info.grounding}  # fmt: skip


async def _model_status(service: Service, lc: ModelLifecycle) -> dict[str, Any]:
    memory = await lc.live_device_memory()
    return {
        "model": lc.model,
        "state": lc.state.value,
        **_lifecycle_fields(service, lc, memory),
        "engine_pid": lc.engine.pid if lc.engine_alive else None,
        "standby_pid": lc.standby_pid,
        "engine_gpu_memory_bytes": await asyncio.to_thread(process_gpu_bytes, lc.engine.pid if lc.engine else None)
        if service.backend == "cuda"
        else 0,
        "shared_memory_bytes": lc.shared_memory_bytes,
        "queue_depth": lc.queue_depth,
        **_catalog_fields(lc),
        "offload_policy": service.settings.offload_policy,
        "engine_idle_timeout": service.settings.engine_idle_timeout,
    }


async def gpu_status(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    models = [await _model_status(service, lc) for lc in service.lifecycles.values()]
    body = dict(models[0])  # the seed's fields, for the default model
    body["models"] = models
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


async def _read_form(request: web.Request, max_bytes: int) -> tuple[bytes, str, dict[str, str]]:
    if not request.content_type.startswith("multipart/form-data"):
        raise ClientError(415, "send the image as multipart/form-data with a 'file' field")
    if request.content_length is not None and request.content_length > max_bytes + _MAX_FIELD_BYTES:
        raise ClientError(413, f"upload of {request.content_length} bytes exceeds the limit of {max_bytes} bytes")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise ClientError(400, f"malformed multipart body: {exc}") from None
    data, filename, fields = None, "", {}
    try:
        while (part := await reader.next()) is not None:
            if part.name == "file":
                data = await _read_limited(part, max_bytes)
                filename = _valid_utf8(part.filename or "")
            elif part.name:
                raw = await _read_limited(part, _MAX_FIELD_BYTES)
                try:
                    fields[part.name] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    hint = "; send the image in the 'file' field" if part.filename is not None else ""
                    raise ClientError(400, f"form field {part.name!r} is not UTF-8{hint}") from None
    except (ValueError, AssertionError, BadHttpMessage) as exc:
        # BadHttpMessage: a part's headers are invalid (control characters, a line too long...)
        raise ClientError(400, f"malformed multipart body: {getattr(exc, 'message', exc)}") from None
    except ConnectionResetError:
        # the client went away mid-upload: nobody reads this answer, but it is no server error
        raise ClientError(400, "the connection closed before the upload was complete") from None
    if data is None:
        raise ClientError(400, "no 'file' field in the form")
    if not data:
        raise ClientError(400, "the uploaded file is empty")
    return data, filename, fields


def _valid_utf8(text: str) -> str:
    """``text`` with the bytes aiohttp could not decode (kept as surrogates, which orjson refuses
    to write) replaced by U+FFFD: the file name goes back in the JSON answer."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


async def _read_limited(part: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"upload exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def ocr(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    settings = service.settings
    data, filename, fields = await _read_form(request, settings.max_upload_bytes)
    lc = _lifecycle(service, fields.get("model"))
    options = {k: fields[k] for k in _OPTION_FIELDS if k in fields}
    options.setdefault("prompt_type", "ocr")
    if is_pdf(data):
        pages = await asyncio.to_thread(render_pdf, data, settings.pdf_dpi, settings.max_pdf_pages)
        results = []
        for page in pages:  # in order; each page takes its turn in the model's queue
            results.append(await lc.infer(page.ppm, options))
        body = pdf_body(results, [p.number for p in pages])
    else:
        inspect_image(data)
        body = result_body(await lc.infer(data, options))
    body.update(
        success=True,
        prompt_type=options["prompt_type"],
        metadata={
            "model": lc.model,
            "device": service.device,
            "filename": filename,
            "size_bytes": len(data),
            "request_id": request["request_id"],
            "timing": body.pop("timing"),
        },
    )
    return json_response(body)


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if not page.exists():
        return web.Response(text="dsocr is running. POST an image to /ocr.", content_type="text/plain")
    return web.FileResponse(page)


async def metrics(request: web.Request) -> web.Response:
    return request.app[SERVICE].metrics.render()


def add_routes(app: web.Application) -> None:
    from supervisor import ocr_stream  # imports this module's form reader

    ocr_stream.add_routes(app)  # /ocr/stream (NDJSON per page), /pdf-to-images
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/gpu/status", gpu_status)
    app.router.add_post("/gpu/offload", gpu_offload)
    app.router.add_post("/gpu/release", gpu_release)
    app.router.add_post("/gpu/stop", gpu_stop)
    app.router.add_post("/ocr", ocr)
    if WEB_DIR.is_dir():
        app.router.add_static("/static/", WEB_DIR, show_index=False)
