"""An upload (an image or a PDF) -> per-page results, through a model's owner task.

Every route that reads documents (``/ocr``, its streaming form, the upstream and OpenAI/Mistral
shapes) goes through ``read_pages``. A PDF is rendered page by page as the model takes the pages:
at most ``in_flight`` rendered pages exist per request at any time (rendered, queued, or in the
engine), so a small PDF with huge pages cannot balloon the supervisor; the pages in flight reach
the owner together and can run as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from supervisor.core.lifecycle import ModelLifecycle
from supervisor.core.settings import Settings
from supervisor.documents.pdf import PdfPages, is_pdf
from supervisor.http.uploads import inspect_image


@dataclass
class PageResult:
    number: int  # 1-based page number (1 for an image)
    count: int  # pages the request reads
    result: dict[str, Any]
    width: int
    height: int


def pages_in_flight(settings: Settings, device: str) -> int:
    """Rendered pages one request may hold: enough to fill a batch, at least two (one rendering
    while one is read)."""
    return max(2, settings.max_batch_for(device))


async def read_pages(
    lc: ModelLifecycle,
    settings: Settings,
    data: bytes,
    options: dict[str, Any],
    *,
    pages: list[int] | None = None,
    on_partial: Callable[[int, str], None] | None = None,
    keep_alive: float | None = None,
) -> AsyncIterator[PageResult]:
    """Yield each page's result in page order as soon as it (and the pages before it) are read."""
    if not is_pdf(data):
        header = inspect_image(data)
        if pages is not None and any(n != 1 for n in pages):
            raise_out_of_range(pages)
        partial = (lambda text: on_partial(1, text)) if on_partial else None
        result = await lc.infer(data, options, on_partial=partial, keep_alive=keep_alive)
        yield PageResult(1, 1, result, header.width, header.height)
        return
    # upstream runs PDF pages with a narrower repetition window than single images
    options = {**options, "source": "pdf"}
    doc = await asyncio.to_thread(
        PdfPages, data, settings.pdf_dpi, settings.max_pdf_pages, max_total_pixels=settings.max_pdf_pixels, pages=pages
    )
    try:
        async for page in _read_pdf(lc, doc, options, pages_in_flight(settings, lc.device), on_partial, keep_alive):
            yield page
    finally:
        doc.close()


def raise_out_of_range(pages: list[int]) -> None:
    from supervisor.http.errors import ClientError

    raise ClientError(400, f"an image has one page; pages {pages} were asked for")


async def _read_pdf(
    lc: ModelLifecycle,
    doc: PdfPages,
    options: dict[str, Any],
    in_flight: int,
    on_partial: Callable[[int, str], None] | None,
    keep_alive: float | None,
) -> AsyncIterator[PageResult]:
    numbers = list(doc.numbers)
    count = len(numbers)

    async def read(number: int) -> PageResult:
        page = await asyncio.to_thread(doc.render, number)
        partial = (lambda text: on_partial(number, text)) if on_partial else None
        image, width, height = page.ppm, page.width, page.height
        del page
        result = await lc.infer(image, options, on_partial=partial, keep_alive=keep_alive)
        return PageResult(number, count, result, width, height)

    tasks: list[asyncio.Task[PageResult]] = []
    try:
        next_index = 0
        while next_index < min(in_flight, count):
            tasks.append(asyncio.create_task(read(numbers[next_index])))
            next_index += 1
        for i in range(count):
            page = await tasks[i]
            tasks[i] = None  # type: ignore[call-overload]  # its pixels can go
            if next_index < count:
                tasks.append(asyncio.create_task(read(numbers[next_index])))
                next_index += 1
            yield page
    finally:
        for task in tasks:  # a page that failed after another did: nobody awaits its error
            if task is not None and task.done() and not task.cancelled():
                task.exception()
        pending = [t for t in tasks if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class Event:
    """One step of a streamed read: ``partial`` text of a page as it is generated, or a ``page`` done."""

    kind: str  # "partial" | "page"
    number: int
    text: str = ""
    page: PageResult | None = None


async def stream_pages(
    lc: ModelLifecycle,
    settings: Settings,
    data: bytes,
    options: dict[str, Any],
    *,
    pages: list[int] | None = None,
    keep_alive: float | None = None,
) -> AsyncIterator[Event]:
    """``read_pages`` as one async iterator of events: partial text as the engine sends it (token
    streaming, for models that stream) interleaved with each finished page, in order. Leaving the
    loop early cancels what is still being read."""
    events: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()

    def on_partial(number: int, text: str) -> None:
        events.put_nowait(Event("partial", number, text))

    async def produce() -> None:
        try:
            async for page in read_pages(
                lc, settings, data, options, pages=pages, on_partial=on_partial, keep_alive=keep_alive
            ):
                events.put_nowait(Event("page", page.number, page=page))
            events.put_nowait(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            events.put_nowait(exc)

    producer = asyncio.create_task(produce())
    try:
        while (event := await events.get()) is not None:
            if isinstance(event, BaseException):
                raise event
            yield event
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
