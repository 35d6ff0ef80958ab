"""``document`` on the embedded model through a real server: one page, the same page as a
3-page PDF (``/ocr``, ``/ocr-pdf``), and the figures through Mistral's ``/v1/ocr``."""

from __future__ import annotations

import base64
import io

import aiohttp
import pytest
from PIL import Image

from bench.document_pages import TABLE, two_column_page
from tests.integration.server import post_ocr, running_server
from tests.pdfs import scanned_pdf

pytestmark = pytest.mark.timeout(300)
TITLE = "# Flood Season Review"
FURNITURE = ("Valley Water Board", "Printed for the spring meeting")
TABLE_ROW = "| " + " | ".join(TABLE[1]) + " |"


def _png(number: int) -> bytes:
    image, _ = two_column_page(number)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    with running_server("--max-pdf-pages", "3") as srv:
        yield srv


async def _post_pdf(url: str, data: bytes, **fields: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename="report.pdf", content_type="application/pdf")
    async with aiohttp.ClientSession() as session, session.post(url, data=form) as resp:
        return resp.status, await resp.json()


async def test_a_page_reads_as_markdown_with_regions_and_a_figure(server) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await post_ocr(session, server.url, _png(1), prompt_type="document")
    assert status == 200, body
    text = body["text"]
    assert text.startswith(TITLE + "\n") and TABLE_ROW in text and "![](figure-0.png)" in text
    assert not any(words in text for words in FURNITURE)
    assert {"header", "footer", "table", "figure"} <= {r["type"] for r in body["regions"]}
    (figure,) = body["figures"]
    x1, y1, x2, y2 = figure["box"]
    assert Image.open(io.BytesIO(base64.b64decode(figure["png_base64"]))).size == (x2 - x1, y2 - y1)


async def test_a_three_page_pdf_is_one_markdown_document(server) -> None:
    pdf = scanned_pdf([_png(n) for n in (1, 2, 3)])
    status, body = await _post_pdf(f"{server.url}/ocr-pdf", pdf)
    assert status == 200, body
    merged = body["merged_text"]
    markers = [merged.index(f"--- Page {n} ---\n{TITLE}\n") for n in (1, 2, 3)]
    assert markers == sorted(markers) and merged.count("--- Page") == 3
    assert merged.count(TABLE_ROW) == 3 and merged.count("## Background") == 3
    assert [f"page-{n}-figure-0.png" in merged for n in (1, 2, 3)] == [True] * 3
    assert not any(words in merged for words in FURNITURE)

    status, body = await _post_pdf(f"{server.url}/ocr", pdf, prompt_type="document")
    assert status == 200, body
    assert [f["id"] for f in body["figures"]] == [f"page-{n}-figure-0.png" for n in (1, 2, 3)]
    assert [len(p["regions"]) > 5 for p in body["pages"]] == [True] * 3


async def test_mistral_ocr_gives_the_figures_as_images(server) -> None:
    url = "data:image/png;base64," + base64.b64encode(_png(1)).decode()
    request = {"model": "ppocr", "document": {"type": "image_url", "image_url": url}, "include_image_base64": True}
    async with aiohttp.ClientSession() as session, session.post(f"{server.url}/v1/ocr", json=request) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    (page,) = body["pages"]
    (image,) = page["images"]
    assert image["id"] == "figure-0.png" and f"]({image['id']})" in page["markdown"]
    assert image["image_base64"].startswith("data:image/png;base64,")
    assert image["top_left_x"] < image["bottom_right_x"] and image["top_left_y"] < image["bottom_right_y"]
