"""PDF uploads -> page images, rendered in the supervisor with pypdfium2 (permissive licence).

Limits are checked before any pixel is rendered: the page count, and each page's size at the
chosen DPI. Pages go to the engine as PPM (raw RGB with a tiny header: nothing to compress or
decompress). pdfium is not thread-safe, so one document renders at a time.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import pypdfium2 as pdfium

from supervisor.errors import ClientError
from supervisor.uploads import MAX_PIXELS

DEFAULT_DPI = 144
DEFAULT_MAX_PAGES = 50
_pdfium_lock = threading.Lock()


def is_pdf(data: bytes) -> bool:
    # the header may follow a few bytes of junk; readers accept it within the first 1 KB
    return b"%PDF-" in data[:1024]


@dataclass(frozen=True)
class RenderedPage:
    number: int  # 1-based
    ppm: bytes
    width: int
    height: int


def render_pdf(data: bytes, dpi: int = DEFAULT_DPI, max_pages: int = DEFAULT_MAX_PAGES,
               max_pixels: int = MAX_PIXELS) -> list[RenderedPage]:  # fmt: skip
    """Every page of the PDF ``data`` as an image; :class:`ClientError` says what is wrong."""
    with _pdfium_lock:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            text = str(exc).lower()
            if "password" in text:
                raise ClientError(400, "the PDF is encrypted (password protected)") from None
            raise ClientError(400, "not a readable PDF (damaged, empty or not a PDF)") from None
        try:
            count = len(doc)
            if count == 0:
                raise ClientError(400, "the PDF has no pages")
            if count > max_pages:
                raise ClientError(413, f"the PDF has {count} pages; the limit is {max_pages} pages")
            scale = dpi / 72
            sizes = []
            for i in range(count):
                w_pt, h_pt = doc[i].get_size()
                w, h = round(w_pt * scale), round(h_pt * scale)
                if w < 1 or h < 1 or w * h > max_pixels:
                    raise ClientError(413, f"page {i + 1} would render to {w}x{h} pixels at {dpi} dpi; "
                                           f"the limit is {max_pixels} pixels per page")  # fmt: skip
                sizes.append((w, h))
            pages = []
            for i in range(count):
                image = doc[i].render(scale=scale).to_pil().convert("RGB")
                buf = io.BytesIO()
                image.save(buf, format="PPM")
                pages.append(RenderedPage(i + 1, buf.getvalue(), image.width, image.height))
            return pages
        except pdfium.PdfiumError as exc:
            raise ClientError(400, f"the PDF cannot be rendered: {exc}") from None
        finally:
            doc.close()
