"""``POST /ocr/stream``: ``/ocr`` answered as NDJSON, one line per page as it finishes, for the page's
"page k of n" progress (the page's thumbnails come from ``/pdf-to-images``, in ``upstream_api``).

The stream takes the same multipart fields as ``/ocr``. Errors found before the first page (bad form,
unknown model, broken PDF, limits) are the usual JSON error answers; once the stream has begun, an
error ends it with a last line ``{"done": true, "success": false, "error", "status", "page"}``.
Pages come from ``supervisor.documents.read_pages``, as for ``/ocr``: a PDF is rendered page by page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from ipc.catalog import default_prompt_type
from supervisor import routes
from supervisor.body_budget import expect_continue
from supervisor.documents import Event, PageResult, stream_pages
from supervisor.errors import http_status
from supervisor.forms import read_form, upstream_fields
from supervisor.request_log import log_ocr
from supervisor.results import pdf_body, result_body
from supervisor.security import SECURITY_HEADERS
from supervisor.service import SERVICE


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


async def ocr_stream(request: web.Request) -> web.StreamResponse:
    """With ``?partial=1``, text is also sent as it is generated: ``{"page": k, "partial": "..."}``
    lines (models that stream: DeepSeek-OCR-2), before that page's full line."""
    service = request.app[SERVICE]
    settings = service.settings
    started = time.monotonic()
    routes.admit(routes.lifecycle_for(service, request.query.get("model")))
    form = await read_form(request, settings)
    form.fields = upstream_fields(form.fields)
    lc = routes.lifecycle_for(service, form.fields.get("model") or request.query.get("model"))
    options = {k: form.fields[k] for k in routes.OPTION_FIELDS if k in form.fields}
    options.setdefault("prompt_type", default_prompt_type(lc.model))
    keep_alive = routes.parse_keep_alive(form.fields.get("keep_alive"))
    send_partials = request.query.get("partial", "") in ("1", "true", "yes")
    events = stream_pages(lc, settings, form.data, options, keep_alive=keep_alive)
    # the first event is awaited before the answer starts: bad input and limits get a plain 4xx
    try:
        first = await anext_or_none(events)
    except Exception as exc:
        log_ocr(lc.model, 0, time.monotonic() - started, http_status(exc)[0], request["request_id"])
        raise
    response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "application/x-ndjson",
                                           "Cache-Control": "no-store", "X-Request-ID": request["request_id"]})  # fmt: skip
    await response.prepare(request)
    results: list[PageResult] = []
    status, number, count = 200, 0, 0
    try:
        event = first
        while event is not None:
            number = event.number
            if event.kind == "partial":
                if send_partials:
                    await response.write(_line({"page": event.number, "partial": event.text}))
            elif event.page is not None:
                page = event.page
                count = page.count
                results.append(page)
                await response.write(_line({"page": page.number, "pages": page.count, **result_body(page.result)}))
            event = await anext_or_none(events)
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
        raise  # the client went away: the error middleware logs it in one line and counts a 499
    except Exception as exc:
        status, message, _ = http_status(exc)
        final = {"done": True, "success": False, "status": status, "error": message, "page": number,
                 "request_id": request["request_id"]}  # fmt: skip
    finally:
        await events.aclose()
    log_ocr(lc.model, len(results), time.monotonic() - started, status, request["request_id"])
    try:
        await response.write(_line(final))
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def anext_or_none(events: AsyncIterator[Event]) -> Event | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


def add_routes(app: web.Application) -> None:
    app.router.add_post("/ocr/stream", ocr_stream, expect_handler=expect_continue)
