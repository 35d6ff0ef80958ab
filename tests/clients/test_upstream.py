"""The upstream DeepSeek-OCR web UI's routes with its field names: ``/ocr-pdf``, ``/pdf-to-images``,
and its older ``mode`` / ``search_text`` fields."""

from __future__ import annotations

import base64
import io

import aiohttp
import pytest
from PIL import Image

from supervisor.api.upstream import upstream_fields
from supervisor.http.errors import ClientError
from tests.clients.conftest import SECOND_PAGE
from tests.integration.server import LINES, Server, post_ocr, render_text, running_server
from tests.pdfs import scanned_pdf

pytestmark = pytest.mark.timeout(240)


async def post_file(url: str, data: bytes, filename: str = "doc.pdf", **fields: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/pdf")
    for key, value in fields.items():
        form.add_field(key, value)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=form) as resp:
            return resp.status, await resp.json()


async def test_ocr_pdf_gives_pages_and_merged_text(server: Server, two_page_pdf: bytes) -> None:
    status, body = await post_file(f"{server.url}/ocr-pdf", two_page_pdf, "scan.pdf", mode="plain")
    assert status == 200, body
    assert body["success"] is True and body["filename"] == "scan.pdf" and body["page_count"] == 2
    # mode plain is prompt type free: ppocr joins a block's lines into a paragraph
    assert [(p["page"], p["text"]) for p in body["pages"]] == [(1, " ".join(LINES)), (2, SECOND_PAGE[0])]
    assert all(p["raw_text"] == p["text"] for p in body["pages"])
    assert body["merged_text"] == f"--- Page 1 ---\n{LINES[0]} {LINES[1]}\n\n--- Page 2 ---\n{SECOND_PAGE[0]}"
    assert body["prompt_type"] == "free" and body["metadata"]["model"] == "ppocr"


async def test_ocr_pdf_maps_the_upstream_modes_to_prompt_types(server: Server, two_page_pdf: bytes) -> None:
    # find + search_text reach the model as prompt_type find + find_term: ppocr says it cannot find
    status, body = await post_file(f"{server.url}/ocr-pdf", two_page_pdf, mode="find", search_text="Berlin")
    assert status == 400 and "'find'" in body["error"]
    status, body = await post_file(f"{server.url}/ocr-pdf", two_page_pdf, mode="poetry")
    assert status == 400 and "unknown mode" in body["error"]


def test_upstream_field_names_map_to_ours() -> None:
    assert upstream_fields({"mode": "doc"}) == {"prompt_type": "document"}
    assert upstream_fields({"mode": "find", "search_text": "Total"}) == {"prompt_type": "find", "find_term": "Total"}
    assert upstream_fields({"mode": "custom", "custom_prompt": "x"}) == {
        "prompt_type": "freeform",
        "custom_prompt": "x",
    }
    assert upstream_fields({"mode": "chart"})["prompt_type"] == "figure"
    assert upstream_fields({"mode": "image"})["prompt_type"] == "describe"
    assert upstream_fields({"mode": "ocr", "prompt_type": "free"}) == {"prompt_type": "free"}  # ours win
    with pytest.raises(ClientError):
        upstream_fields({"mode": "everything"})


async def test_pdf_to_images_renders_png_data_urls(server: Server, page_png: bytes, two_page_pdf: bytes) -> None:
    status, body = await post_file(f"{server.url}/pdf-to-images", two_page_pdf, "scan.pdf")
    assert status == 200, body
    assert body["success"] is True and body["page_count"] == 2 and body["original_filename"] == "scan.pdf"
    source = Image.open(io.BytesIO(page_png)).size  # the PDF was made at 144 dpi, rendered at 144 dpi
    for number, image in enumerate(body["images"], start=1):
        assert image["page_number"] == number and image["name"] == f"page_{number}.png"
        prefix = "data:image/png;base64,"
        assert image["data"].startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(image["data"][len(prefix) :]))) as png:
            assert png.format == "PNG" and png.size == (image["width"], image["height"])
    assert (body["images"][0]["width"], body["images"][0]["height"]) == source

    status, body = await post_file(f"{server.url}/pdf-to-images", page_png, "page.png")
    assert status == 400 and "not a PDF" in body["error"]


async def test_pdf_to_images_keeps_the_page_limit() -> None:
    pdf = scanned_pdf([render_text(["one"]), render_text(["two"])])
    with running_server("--max-pdf-pages", "1") as server:
        status, body = await post_file(f"{server.url}/pdf-to-images", pdf)
        assert status == 413 and "limit is 1 pages" in body["error"]


async def test_ocr_accepts_the_upstream_field_names(server: Server, page_png: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await post_ocr(session, server.url, page_png, mode="plain")
        assert status == 200 and body["prompt_type"] == "free"
        status, body = await post_ocr(session, server.url, page_png, mode="find", search_text="Berlin")
        assert status == 400 and "'find'" in body["error"]  # reached ppocr as prompt_type find
