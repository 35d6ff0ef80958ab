"""The ``mistralai`` SDK's OCR call (``client.ocr.process``) pointed at a real server."""

from __future__ import annotations

import aiohttp
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError

from tests.clients.conftest import SECOND_PAGE, data_url
from tests.integration.server import LINES, Server

pytestmark = pytest.mark.timeout(240)


def client(server: Server) -> Mistral:
    return Mistral(api_key="not-needed", server_url=server.url)


def plain(markdown: str) -> list[str]:
    """The markdown's lines without heading marks and blank lines (ppocr's ``document`` may take a
    page's first line in large type for a heading)."""
    return [line.lstrip("#").strip() for line in markdown.splitlines() if line.strip()]


def test_ocr_process_reads_a_pdf_and_its_selected_pages(server: Server, two_page_pdf: bytes) -> None:
    document = {"type": "document_url", "document_url": data_url(two_page_pdf, "application/pdf")}
    answer = client(server).ocr.process(model="ppocr", document=document, include_image_base64=False)
    assert [p.index for p in answer.pages] == [0, 1]
    assert plain(answer.pages[0].markdown) == LINES and plain(answer.pages[1].markdown) == SECOND_PAGE
    assert answer.pages[0].images == [] and answer.pages[0].dimensions.dpi == 144
    assert answer.pages[0].dimensions.width > answer.pages[1].dimensions.width > 0
    assert answer.usage_info.pages_processed == 2 and answer.usage_info.doc_size_bytes == len(two_page_pdf)
    assert answer.model == "ppocr"

    second = client(server).ocr.process(model="ppocr", document=document, pages=[1])
    assert [(p.index, plain(p.markdown)) for p in second.pages] == [(1, SECOND_PAGE)]


async def test_pages_carry_boxes_as_an_extra_field(server: Server, two_page_pdf: bytes) -> None:
    # the SDK's models drop fields they do not know: read the JSON itself
    body = {"model": "ppocr", "pages": "0",
            "document": {"type": "document_url", "document_url": data_url(two_page_pdf, "application/pdf")}}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/v1/ocr", json=body) as resp:
            assert resp.status == 200
            answer = await resp.json()
    assert [p["index"] for p in answer["pages"]] == [0]
    assert [b["label"] for b in answer["pages"][0]["boxes"]] == LINES
    assert all(len(b["box"]) == 4 for b in answer["pages"][0]["boxes"])


def test_ocr_process_reads_an_image_url(server: Server, page_png: bytes) -> None:
    answer = client(server).ocr.process(model="ppocr", document={"type": "image_url", "image_url": data_url(page_png)})
    assert len(answer.pages) == 1 and plain(answer.pages[0].markdown) == LINES
    assert answer.pages[0].dimensions.width > 0 and answer.usage_info.pages_processed == 1


def test_errors_are_http_errors_with_a_message(server: Server, two_page_pdf: bytes) -> None:
    document = {"type": "document_url", "document_url": data_url(two_page_pdf, "application/pdf")}
    with pytest.raises(SDKError) as caught:
        client(server).ocr.process(model="ppocr", document=document, pages=[5])
    assert caught.value.status_code == 400 and "out of range" in caught.value.body
    with pytest.raises(SDKError) as caught:
        client(server).ocr.process(model="mistral-ocr-latest", document=document)
    assert caught.value.status_code == 404 and "ppocr" in caught.value.body
