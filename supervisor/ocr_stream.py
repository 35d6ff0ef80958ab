"""``POST /ocr/stream``: ``/ocr`` answered as NDJSON, one line per page as it finishes, for the page's
"page k of n" progress; and ``POST /pdf-to-images``, the upstream web UI's page thumbnails.

The stream takes the same multipart fields as ``/ocr``. Errors found before the first page (bad form,
unknown model, broken PDF, limits) are the usual JSON error answers; once the stream has begun, an
error ends it with a last line ``{"done": true, "success": false, "error", "status", "page"}``.
Pages come from ``supervisor.documents.read_pages``, as for ``/ocr``: a PDF is rendered page by page.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from PIL import Image

from supervisor import routes
from supervisor.documents import PageResult, read_pages
from supervisor.errors import http_status
from supervisor.forms import read_form
from supervisor.pdf import is_pdf, render_pdf
from supervisor.responses import json_response
from supervisor.results import pdf_body, result_body
from supervisor.security import SECURITY_HEADERS
from supervisor.service import SERVICE


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


async def ocr_stream(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    settings = service.settings
    started = time.monotonic()
    routes.admit(routes.lifecycle_for(service, request.query.get("model")))
    form = await read_form(request, settings)
    lc = routes.lifecycle_for(service, form.fields.get("model") or request.query.get("model"))
    options = {k: form.fields[k] for k in routes.OPTION_FIELDS if k in form.fields}
    options.setdefault("prompt_type", "ocr")
    keep_alive = routes.parse_keep_alive(form.fields.get("keep_alive"))
    pages = read_pages(lc, settings, form.data, options, keep_alive=keep_alive)
    # the first page is awaited before the answer starts: bad input and limits get a plain 4xx
    try:
        first = await anext_or_none(pages)
    except Exception as exc:
        routes.log_ocr(lc.model, 0, time.monotonic() - started, http_status(exc)[0], request["request_id"])
        raise
    response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "application/x-ndjson",
                                           "Cache-Control": "no-store", "X-Request-ID": request["request_id"]})  # fmt: skip
    await response.prepare(request)
    results: list[PageResult] = []
    status, number, count = 200, 0, first.count if first else 0
    try:
        page = first
        while page is not None:
            number = page.number
            results.append(page)
            await response.write(_line({"page": page.number, "pages": page.count, **result_body(page.result)}))
            page = await anext_or_none(pages)
        if form.is_pdf:
            body = pdf_body([p.result for p in results], [p.number for p in results])
        else:
            body = result_body(results[0].result)
        body.update(
            done=True,
            success=True,
            pages=count,
            prompt_type=options["prompt_type"],
            metadata={"model": lc.model, "device": service.device, "filename": form.filename,
                      "size_bytes": len(form.data), "request_id": request["request_id"], "timing": body.pop("timing")},
        )  # fmt: skip
        body.pop("lines", None)
        body.pop("boxes", None)  # each page line had them already
        final = body
    except (ConnectionResetError, asyncio.CancelledError):
        routes.log_ocr(lc.model, len(results), time.monotonic() - started, "client-gone", request["request_id"])
        raise
    except Exception as exc:
        status, message, _ = http_status(exc)
        final = {"done": True, "success": False, "status": status, "error": message, "page": number,
                 "request_id": request["request_id"]}  # fmt: skip
    finally:
        await pages.aclose()
    routes.log_ocr(lc.model, len(results), time.monotonic() - started, status, request["request_id"])
    try:
        await response.write(_line(final))
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def anext_or_none(pages: AsyncIterator[PageResult]) -> PageResult | None:
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None


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
    data = (await read_form(request, settings)).data
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
