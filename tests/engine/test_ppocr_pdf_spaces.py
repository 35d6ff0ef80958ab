"""A PDF page made by Pillow (800 x 600 image, 36 px DejaVu Serif), rendered at /ocr-pdf's 144 dpi
and at 72 dpi, reads with its word gaps: at 144 dpi the detector (run at 960 pixels a side) gave
boxes about 10% tighter than at the page's own resolution, and the recognizer read "thetest" and
"total92.40" from them until the line crops got their margin (``recognize.MARGIN``)."""

from __future__ import annotations

import io

import numpy as np
import pypdfium2 as pdfium
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from engine.models.ppocr.model import PPOCRModule
from engine.models.ppocr.pipeline import read_page
from tests.engine.test_ppocr import FONTS, adapter, module, weights  # noqa: F401  (fixtures)

LINES = ["Page one of the test PDF", "Invoice 7781 total 92.40 EUR"]


def pillow_pdf(x: int, top: int, gap: int) -> bytes:
    image = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONTS / "DejaVuSerif.ttf"), 36)
    for i, line in enumerate(LINES):
        draw.text((x, top + i * gap), line, font=font, fill="black")
    buf = io.BytesIO()
    image.save(buf, "PDF")  # 72 dpi: an 800 x 600 point page
    return buf.getvalue()


def rendered(pdf: bytes, dpi: int) -> np.ndarray:
    doc = pdfium.PdfDocument(pdf)
    try:  # as supervisor/documents/pdf.py renders for /ocr-pdf
        return np.ascontiguousarray(doc[0].render(scale=dpi / 72, rev_byteorder=True).to_numpy()[:, :, :3])
    finally:
        doc.close()


# layouts that read "thetest" and/or "total92.40" at 144 dpi before the margin
@pytest.mark.parametrize("x, top, gap", [(60, 80, 60), (100, 40, 80), (100, 100, 100)])
@pytest.mark.parametrize("dpi", [144, 72])
def test_the_pillow_pdf_reads_both_lines_with_their_spaces(module: PPOCRModule, x, top, gap, dpi) -> None:
    image = rendered(pillow_pdf(x, top, gap), dpi)
    assert image.shape[:2] == (600 * dpi // 72, 800 * dpi // 72)
    with torch.inference_mode():
        page = read_page(module.nets, image)
    assert [line.text for line in page.lines] == LINES
