"""A figure in a ``document`` answer comes back as a PNG crop with its box: in ``/ocr``'s
``figures`` and as ``/v1/ocr``'s Mistral ``images`` (the ``mistralai`` SDK's own models).

The tiny DeepSeek-OCR-2 here is scripted (``bench/tiny_models/deepseek_ocr2.py``, ``script``): to
the document prompt it answers an ``image`` span at [100, 200, 500, 600] of its 0-999 space, then a
line of text, through the real server, engine and generation.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import aiohttp
import pytest
from mistralai.client import Mistral
from PIL import Image

from tests.clients.conftest import data_url
from tests.integration.server import Server, post_ocr, running_server
from tests.pdfs import scanned_pdf
from tests.tiny_deepseek import build_tiny

MODEL = "deepseek-ocr-2"
SPAN = ["<|ref|>", "image", "<|/ref|>", "<|det|>", "[[100, 200, 500, 600]]", "<|/det|>", "\n", "Shipped"]
WIDTH, HEIGHT = 999, 500  # x in pixels = x in 0-999; y halved
BOX = [100, 100, 500, 300]
pytestmark = pytest.mark.timeout(300)


def page_png(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def figures_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tiny = build_tiny(tmp_path_factory.mktemp("tiny-deepseek-figures"), script=SPAN)
    args = ("--model", MODEL, "--idle-timeout", "0",
            "--model-option", f"{MODEL}.model_path={tiny}", "--model-option", f"{MODEL}.max_new_tokens=16")  # fmt: skip
    with running_server(*args) as server:
        yield server


def png_size(b64: str) -> tuple[int, int]:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image.size


async def test_a_document_answer_without_prompt_type_returns_its_figure_crop(figures_server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        status, result = await post_ocr(session, figures_server.url, page_png())  # no prompt_type: the document task
    assert status == 200, result
    assert result["prompt_type"] == "document"
    assert result["text"].startswith("![](figure-0.png)") and "Shipped" in result["text"]
    (figure,) = result["figures"]
    assert figure["id"] == "figure-0.png" and figure["box"] == BOX
    assert png_size(figure["png_base64"]) == (BOX[2] - BOX[0], BOX[3] - BOX[1])
    assert {"label": "image", "box": BOX, "figure": 0} in result["boxes"]


async def test_the_stream_defaults_to_the_document_task_and_carries_the_figure(figures_server: Server) -> None:
    form = aiohttp.FormData()
    form.add_field("file", page_png(), filename="page.png", content_type="image/png")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{figures_server.url}/ocr/stream?partial=1", data=form) as resp:
            assert resp.status == 200
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    partials = "".join(line["partial"] for line in lines if "partial" in line)
    page, final = [line for line in lines if "partial" not in line]
    assert "<|ref|>" in partials and page["figures"][0]["id"] == "figure-0.png" and page["figures"][0]["box"] == BOX
    assert final["done"] and final["prompt_type"] == "document"


def test_v1_ocr_fills_mistral_images_with_base64_only_when_asked(figures_server: Server) -> None:
    client = Mistral(api_key="not-needed", server_url=figures_server.url)
    document = {"type": "image_url", "image_url": data_url(page_png())}
    answer = client.ocr.process(model=MODEL, document=document, include_image_base64=True)
    (page,) = answer.pages
    assert "![](figure-0.png)" in page.markdown
    (image,) = page.images
    assert image.id == "figure-0.png"
    assert [image.top_left_x, image.top_left_y, image.bottom_right_x, image.bottom_right_y] == BOX
    prefix = "data:image/png;base64,"
    assert image.image_base64.startswith(prefix)
    assert png_size(image.image_base64[len(prefix) :]) == (BOX[2] - BOX[0], BOX[3] - BOX[1])

    plain = client.ocr.process(model=MODEL, document=document)
    (image,) = plain.pages[0].images
    assert image.id == "figure-0.png" and not image.image_base64


def test_each_pdf_page_has_its_own_images(figures_server: Server) -> None:
    pdf = scanned_pdf([page_png(), page_png(600, 800)])
    client = Mistral(api_key="not-needed", server_url=figures_server.url)
    answer = client.ocr.process(
        model=MODEL, document={"type": "document_url", "document_url": data_url(pdf, "application/pdf")}
    )
    assert [p.index for p in answer.pages] == [0, 1]
    for page in answer.pages:
        (image,) = page.images
        width, height = page.dimensions.width, page.dimensions.height
        assert image.id == "figure-0.png" and "![](figure-0.png)" in page.markdown
        # the span's 0-999 box in this page's pixels (as upstream scales: int(v / 999 * size))
        expected = [int(100 / 999 * width), int(200 / 999 * height), int(500 / 999 * width), int(600 / 999 * height)]
        assert [image.top_left_x, image.top_left_y, image.bottom_right_x, image.bottom_right_y] == expected
