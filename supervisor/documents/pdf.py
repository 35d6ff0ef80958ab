"""PDF uploads -> page images, rendered one page at a time in the supervisor with pypdfium2.

Limits are checked when the document is opened, before any pixel is rendered: the page count,
each page's size at the chosen DPI, and the pixels of all the pages asked for together (a small
PDF can declare huge pages). Pages are then rendered on demand, as the model takes them, so a
request holds only the few rendered pages it has in flight (``supervisor.documents.pages``). Pages go
to the engine as PPM (raw RGB with a tiny header: nothing to compress or decompress). pdfium is
not thread-safe: every call into it holds one lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pypdfium2 as pdfium

from supervisor.http.errors import ClientError
from supervisor.http.uploads import MAX_PIXELS

DEFAULT_DPI = 144
DEFAULT_MAX_PAGES = 50
# all the pages of one request together: ~100 letter pages at 144 dpi
DEFAULT_MAX_TOTAL_PIXELS = 200_000_000
_pdfium_lock = threading.Lock()


def is_pdf(data: bytes) -> bool:
    # the header may follow a few bytes of junk; readers accept it within the first 1 KB
    return b"%PDF-" in data[:1024]


@dataclass(frozen=True)
class RenderedPage:
    number: int  # 1-based
    ppm: bytes | bytearray
    width: int
    height: int


def parse_page_selection(pages: list[int] | None, count: int) -> list[int]:
    """1-based page numbers to read (all when ``pages`` is None); 400 for one out of range."""
    if pages is None:
        return list(range(1, count + 1))
    chosen = []
    for number in pages:
        if not 1 <= number <= count:
            raise ClientError(400, f"page {number} is out of range: the PDF has {count} pages")
        if number not in chosen:
            chosen.append(number)
    if not chosen:
        raise ClientError(400, "no page selected")
    return chosen


class PdfPages:
    """An open PDF whose selected pages are checked against the limits and rendered on demand."""

    def __init__(
        self,
        data: bytes,
        dpi: int = DEFAULT_DPI,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_pixels: int = MAX_PIXELS,
        max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS,
        pages: list[int] | None = None,
    ) -> None:
        self.scale = dpi / 72
        with _pdfium_lock:
            try:
                self._doc = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as exc:
                if "password" in str(exc).lower():
                    raise ClientError(400, "the PDF is encrypted (password protected)") from None
                raise ClientError(400, "not a readable PDF (damaged, empty or not a PDF)") from None
            try:
                self.count = len(self._doc)
                self.sizes = [self._doc[i].get_size() for i in range(self.count)]
            except pdfium.PdfiumError as exc:
                self._doc.close()
                raise ClientError(400, f"the PDF cannot be read: {exc}") from None
        try:
            self._check(dpi, max_pages, max_pixels, max_total_pixels, pages)
        except BaseException:
            self.close()
            raise

    def _check(self, dpi: int, max_pages: int, max_pixels: int, max_total: int, pages: list[int] | None) -> None:
        if self.count == 0:
            raise ClientError(400, "the PDF has no pages")
        self.numbers = parse_page_selection(pages, self.count)
        if len(self.numbers) > max_pages:
            raise ClientError(413, f"the PDF has {len(self.numbers)} pages; the limit is {max_pages} pages")
        total = 0
        for number in self.numbers:
            w, h = self.pixel_size(number)
            if w < 1 or h < 1 or w * h > max_pixels:
                raise ClientError(
                    413,
                    f"page {number} would render to {w}x{h} pixels at {dpi} dpi; "
                    f"the limit is {max_pixels} pixels per page",
                )
            total += w * h
        if total > max_total:
            raise ClientError(
                413,
                f"the pages would render to {total / 1e6:.0f} megapixels at {dpi} dpi; the limit for one "
                f"request is {max_total / 1e6:.0f} megapixels (--max-pdf-megapixels)",
            )

    def pixel_size(self, number: int) -> tuple[int, int]:
        w_pt, h_pt = self.sizes[number - 1]
        return round(w_pt * self.scale), round(h_pt * self.scale)

    def render(self, number: int) -> RenderedPage:
        """Page ``number`` (1-based) as PPM bytes; blocking, so call it in a worker thread."""
        with _pdfium_lock:
            try:
                bitmap = self._doc[number - 1].render(scale=self.scale, rev_byteorder=True)
                array = bitmap.to_numpy()  # a view of pdfium's buffer, RGB(A/x) order
                height, width = array.shape[:2]
                header = f"P6\n{width} {height}\n255\n".encode("ascii")
                # the PPM is written in place: the pixels are copied once, from pdfium's buffer
                ppm = bytearray(len(header) + width * height * 3)
                ppm[: len(header)] = header
                pixels = np.frombuffer(ppm, dtype=np.uint8, offset=len(header)).reshape(height, width, 3)
                pixels[:] = array[:, :, :3]
                del array, pixels
                bitmap.close()
            except pdfium.PdfiumError as exc:
                raise ClientError(400, f"page {number} of the PDF cannot be rendered: {exc}") from None
        return RenderedPage(number, ppm, width, height)

    def close(self) -> None:
        with _pdfium_lock:
            self._doc.close()


def render_pdf(
    data: bytes, dpi: int = DEFAULT_DPI, max_pages: int = DEFAULT_MAX_PAGES, max_pixels: int = MAX_PIXELS
) -> list[RenderedPage]:
    """Every page at once (the CLI's local mode and small tools): the server uses ``PdfPages``."""
    doc = PdfPages(data, dpi, max_pages, max_pixels, max_total_pixels=max_pages * max_pixels)
    try:
        return [doc.render(n) for n in doc.numbers]
    finally:
        doc.close()
