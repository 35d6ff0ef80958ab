"""``POST /ocr/stream``: ``/ocr`` answered as NDJSON, one line per page as it finishes, for the page's
"page k of n" progress (the page's thumbnails come from ``/pdf-to-images``, in ``upstream_api``).

The stream takes the same multipart fields as ``/ocr``. Errors found before the first page (bad form,
unknown model, broken PDF, limits) are the usual JSON error answers; once the stream has begun, an
error ends it with a last line ``{"done": true, "success": false, "error", "status", "page"}``.
A request that finds its model loading (the first one after a start or a release: seconds) is told
so at once, ``{"loading": true, "model", "state", "message"}`` as the first line; the stream has then
begun, so an error found after it (the first page's included) comes in the last line.
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
from supervisor.api import shared
from supervisor.api.forms import read_form, upstream_fields
from supervisor.core.lifecycle import ModelLifecycle
from supervisor.core.model_states import State
from supervisor.core.service import SERVICE
from supervisor.documents.pages import Event, PageResult, stream_pages
from supervisor.documents.results import pdf_body, result_body
from supervisor.http.body_budget import expect_continue
from supervisor.http.errors import http_status
from supervisor.http.request_log import log_ocr
from supervisor.http.security import SECURITY_HEADERS

_LOADING_POLL_S = 0.05


def _line(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data) + b"\n"


async def ocr_stream(request: web.Request) -> web.StreamResponse:
    """With ``?partial=1``, text is also sent as it is generated: ``{"page": k, "partial": "..."}``
    lines (models that stream: DeepSeek-OCR-2), before that page's full line."""
    service = request.app[SERVICE]
    settings = service.settings
    started = time.monotonic()
    shared.admit(shared.lifecycle_for(service, request.query.get("model")))
    form = await read_form(request, settings)
    form.fields = upstream_fields(form.fields)
    lc = shared.lifecycle_for(service, form.fields.get("model") or request.query.get("model"))
    options = {k: form.fields[k] for k in shared.OPTION_FIELDS if k in form.fields}
    options.setdefault("prompt_type", default_prompt_type(lc.model))
    keep_alive = shared.parse_keep_alive(form.fields.get("keep_alive"))
    send_partials = request.query.get("partial", "") in ("1", "true", "yes")
    events = stream_pages(lc, settings, form.data, options, keep_alive=keep_alive)
    pending = asyncio.ensure_future(anext_or_none(events))
    try:
        # the first event is awaited before the answer starts (bad input and limits get a plain
        # 4xx), unless the model is seen loading first: then the client hears that now
        notice = await loading_notice(lc, pending)
        if notice is None:
            try:
                first = await pending
            except Exception as exc:
                log_ocr(lc.model, 0, time.monotonic() - started, http_status(exc)[0], request["request_id"])
                raise
        response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "application/x-ndjson",
                                               "Cache-Control": "no-store", "X-Request-ID": request["request_id"]})  # fmt: skip
        await response.prepare(request)
        if notice is not None:
            await response.write(_line(notice))
    except BaseException:
        await _stop(pending, events)
        raise
    results: list[PageResult] = []
    status, number, count = 200, 0, 0
    try:
        event = first if notice is None else await pending
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
        await _stop(pending, events)
    log_ocr(lc.model, len(results), time.monotonic() - started, status, request["request_id"])
    try:
        await response.write(_line(final))
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def loading_notice(lc: ModelLifecycle, pending: asyncio.Future[Event | None]) -> dict[str, Any] | None:
    """The line to send while the model loads before the first page (read from the owner's public
    state, which only it changes), or None once the first event came without a load."""
    while not pending.done():
        if lc.state in (State.LOADING, State.RESTORING):
            state = lc.state.value
            return {
                "loading": True,
                "model": lc.model,
                "state": state,
                "message": f"loading model {lc.model} ({state})…",
            }
        await asyncio.wait({pending}, timeout=_LOADING_POLL_S)
    return None


async def _stop(pending: asyncio.Future[Event | None], events: AsyncIterator[Event]) -> None:
    """Nothing left reading: the pending event cancelled (its pages leave the queue), the pages closed."""
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await events.aclose()  # type: ignore[attr-defined]


async def anext_or_none(events: AsyncIterator[Event]) -> Event | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


def add_routes(app: web.Application) -> None:
    app.router.add_post("/ocr/stream", ocr_stream, expect_handler=expect_continue)
