"""``stream: true`` chat completions: Server-Sent Events in OpenAI's chunk format.

Text goes out as the model writes it (DeepSeek sends partial text through the engine), and in one
chunk per page for a model that sends none (ppocr). Pages of a PDF are read several at a time, so
partial text of a later page is held back until the pages before it are done: the chunks always
join to the non-streamed answer. Nothing is sent before the first text, so an error found early
(a bad image, an unknown prompt type) is still an HTTP error with OpenAI's error object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web

from supervisor.api.openai.shapes import PAGE_JOIN, ChatRequest, finish_reason, page_text, usage
from supervisor.api.shared import error_body
from supervisor.core.service import Service
from supervisor.documents.pages import PageResult, read_pages
from supervisor.http.errors import http_status
from supervisor.http.request_log import log_ocr
from supervisor.http.security import SECURITY_HEADERS

log = logging.getLogger("dsocr.supervisor.openai")
_DONE = object()


class _PageOrder:
    """Partial text and finished pages -> text deltas in page order (the pages of a chat request
    are all the pages, read in ascending order)."""

    def __init__(self) -> None:
        self.expected = 1  # the page whose text goes out as it comes
        self.done = 0
        self.sent: dict[int, str] = defaultdict(str)
        self.held: dict[int, list[str]] = defaultdict(list)

    def partial(self, page: int, text: str) -> str:
        if page != self.expected:
            self.held[page].append(text)
            return ""
        separator = PAGE_JOIN if self.done and not self.sent[page] else ""
        self.sent[page] += text
        return separator + text

    def finished(self, page: PageResult) -> str:
        """The rest of ``page``'s text, then what the next page has already written."""
        full = page_text(page.result)
        sent = self.sent.pop(page.number, "")
        if not sent:
            delta = (PAGE_JOIN if self.done else "") + full
        elif full.startswith(sent):
            delta = full[len(sent) :]
        else:
            log.warning("page %d: the streamed text is not a prefix of the final text", page.number)
            delta = ""
        self.done += 1
        self.expected = page.number + 1
        held = "".join(self.held.pop(self.expected, []))
        if held:
            self.sent[self.expected] = held
            delta += PAGE_JOIN + held
        return delta


def _chunk(chat: ChatRequest, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": chat.id,
        "object": "chat.completion.chunk",
        "created": chat.created,
        "model": chat.lc.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def stream_completion(request: web.Request, chat: ChatRequest, service: Service) -> web.StreamResponse:
    events: asyncio.Queue[Any] = asyncio.Queue()
    order = _PageOrder()

    def on_partial(page: int, text: str) -> None:
        events.put_nowait(("partial", page, text))

    async def produce() -> None:
        try:
            async for page in read_pages(chat.lc, service.settings, chat.document, chat.options,
                                         on_partial=on_partial, keep_alive=chat.keep_alive):  # fmt: skip
                events.put_nowait(("page", page))
            events.put_nowait(_DONE)
        except Exception as exc:
            events.put_nowait(("error", exc))

    t0 = time.perf_counter()
    producer = asyncio.create_task(produce())
    response: web.StreamResponse | None = None
    results: list[dict[str, Any]] = []
    try:
        while (event := await events.get()) is not _DONE:
            if event[0] == "error":
                if response is None:
                    raise event[1]
                status, message, _ = http_status(event[1])
                await response.write(b"data: " + orjson.dumps(error_body(status, message)) + b"\n\n")
                break
            if event[0] == "partial":
                text = order.partial(event[1], event[2])
            else:
                results.append(event[1].result)
                text = order.finished(event[1])
            if not text:
                continue
            if response is None:
                response = await _start(request, chat)
            await response.write(_chunk(chat, {"content": text}))
        else:
            if response is None:
                response = await _start(request, chat)
            await response.write(_chunk(chat, {}, finish_reason(results)))
            if chat.include_usage:
                tail = {"id": chat.id, "object": "chat.completion.chunk", "created": chat.created,
                        "model": chat.lc.model, "choices": [], "usage": usage(results)}  # fmt: skip
                await response.write(b"data: " + orjson.dumps(tail) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        log_ocr(chat.lc.model, len(results), time.perf_counter() - t0, 200, request["request_id"])
        return response
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(BaseException):
            await producer


async def _start(request: web.Request, chat: ChatRequest) -> web.StreamResponse:
    # the middlewares' headers come too late for a response already sent: set them here
    headers = {**SECURITY_HEADERS, "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Request-ID": request["request_id"]}  # fmt: skip
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    await response.write(_chunk(chat, {"role": "assistant", "content": ""}))
    return response
