"""``image_pdf``: any image the engine can read becomes a one-page PDF, however small or large (a
PDF page is 3 to 14,400 units a side; schemathesis' 1x1 PNG once got a 500 from ``output=pdf``)."""

from __future__ import annotations

import io

import pikepdf
import pytest

from supervisor.documents.searchable_pdf import image_pdf
from tests.helpers import png_bytes


@pytest.mark.parametrize(("width", "height"), [(1, 1), (2, 900), (612, 792), (30000, 20)])
def test_an_image_of_any_size_is_a_page_within_the_pdf_limits(width: int, height: int) -> None:
    with pikepdf.open(io.BytesIO(image_pdf(png_bytes(width, height)))) as pdf:
        (page,) = pdf.pages
        _, _, w, h = (float(v) for v in page.mediabox)
    assert 3 <= w <= 14400 and 3 <= h <= 14400
    if (width, height) == (612, 792):
        assert (w, h) == (612, 792)  # 72 dpi: one pixel a point, untouched
