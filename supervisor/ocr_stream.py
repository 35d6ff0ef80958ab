"""``POST /ocr/stream``: ``/ocr`` answered as NDJSON, one line per page as it finishes, for the page's
"page k of n" progress; and ``POST /pdf-to-images``, the upstream web UI's page thumbnails.

The stream takes the same multipart fields as ``/ocr``. Errors found before the first page (bad form,
unknown model, broken PDF, limits) are the usual JSON error answers; once the stream has begun, an
error ends it with a last line ``{"done": true, "success": false, "error", "status", "page"}``.
Each OCR is logged once, with model, pages, seconds and status (the lead adds the same line to ``/ocr``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from PIL import Image

from supervisor import routes
from supervisor.app import SERVICE, json_response
from supervisor.errors import http_status
from supervisor.pdf import is_pdf, render_pdf
from supervisor.results import pdf_body, result_body
from supervisor.security import SECURITY_HEADERS
from supervisor.uploads import inspect_image

log = logging.getLogger("dsocr.supervisor")


def log_ocr(model: str, pages: int, seconds: float, status: int | str, request_id: str) -> None:
    """The one INFO line per OCR request."""
    log.info("ocr model=%s pages=%d seconds=%.2f status=%s [%s]", model, pages, seconds, status, request_id)


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


async def ocr_stream(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    settings = service.settings
    started = time.monotonic()
    data, filename, fields = await routes._read_form(request, settings.max_upload_bytes)
    lc = routes._lifecycle(service, fields.get("model"))
    options = {k: fields[k] for k in routes._OPTION_FIELDS if k in fields}
    options.setdefault("prompt_type", "ocr")
    pdf = is_pdf(data)
    if pdf:
        rendered = await asyncio.to_thread(render_pdf, data, settings.pdf_dpi, settings.max_pdf_pages)
        images = [(page.number, page.ppm) for page in rendered]
    else:
        inspect_image(data)
        images = [(1, data)]

    response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "application/x-ndjson",
                                           "Cache-Control": "no-store", "X-Request-ID": request["request_id"]})  # fmt: skip
    await response.prepare(request)
    count, results, status, page = len(images), [], 200, 0
    try:
        for page, image in images:  # in order; each page takes its turn in the model's queue
            result = await lc.infer(image, options)
            results.append(result)
            await response.write(_line({"page": page, "pages": count, **result_body(result)}))
        body = pdf_body(results, [n for n, _ in images]) if pdf else result_body(results[0])
        body.update(
            done=True,
            success=True,
            pages=count,
            prompt_type=options["prompt_type"],
            metadata={"model": lc.model, "device": service.device, "filename": filename, "size_bytes": len(data),
                      "request_id": request["request_id"], "timing": body.pop("timing")},
        )  # fmt: skip
        body.pop("lines", None)
        body.pop("boxes", None)  # each page line had them already
        final = body
    except (ConnectionResetError, asyncio.CancelledError):
        log_ocr(lc.model, len(results), time.monotonic() - started, "client-gone", request["request_id"])
        raise
    except Exception as exc:
        status, message, _ = http_status(exc)
        final = {"done": True, "success": False, "status": status, "error": message, "page": page,
                 "request_id": request["request_id"]}  # fmt: skip
    log_ocr(lc.model, count, time.monotonic() - started, status, request["request_id"])
    try:
        await response.write(_line(final))
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


def _png_data_url(ppm: bytes) -> str:
    with Image.open(io.BytesIO(ppm)) as image:
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


async def pdf_to_images(request: web.Request) -> web.Response:
    """The upstream web UI's route: every page as a PNG data URL, with the same limits as ``/ocr``.

    A minimal version for the page's thumbnails; the route's full version lives elsewhere.
    """
    settings = request.app[SERVICE].settings
    data, _, _ = await routes._read_form(request, settings.max_upload_bytes)
    if not is_pdf(data):
        return json_response({"success": False, "error": "not a PDF"}, status=400)
    pages = await asyncio.to_thread(render_pdf, data, settings.pdf_dpi, settings.max_pdf_pages)
    urls = await asyncio.to_thread(lambda: [_png_data_url(page.ppm) for page in pages])
    images = [{"data": url, "name": f"page_{page.number}.png", "width": page.width, "height": page.height,
               "page_number": page.number} for page, url in zip(pages, urls)]  # fmt: skip
    return json_response({"success": True, "images": images, "page_count": len(images)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/ocr/stream", ocr_stream)
    app.router.add_post("/pdf-to-images", pdf_to_images)
