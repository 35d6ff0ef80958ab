"""GLM-OCR, PaddleOCR-VL and HunyuanOCR (tiny random checkpoints) served at once by one real
server: every prompt type of each answers on ``/ocr`` (and ``/ocr-pdf`` reads every page), an unknown one is a 400 naming those it
has, the OpenAI SDK gets the same text plain and streamed, requests sent together (one batch) get
what they get one by one, and requests alternating between the models all answer while
``/gpu/status`` shows each model resident in its own segment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from openai import OpenAI

from ipc.catalog import model_info
from tests.clients.conftest import data_url
from tests.integration.server import Server, get_json, post_ocr, render_text, running_server, segments_of
from tests.pdfs import scanned_pdf
from tests.tiny_vlm import build_tiny

MODELS = ("glm-ocr", "paddleocr-vl", "hunyuan-ocr")
PAGE = render_text(["Invoice 2041"], size=16)
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--idle-timeout", "0", "--max-batch", "4"]
    for model in MODELS:
        folder = build_tiny(model, tmp_path_factory.mktemp(model))
        args += ["--model", model, "--model-option", f"{model}.model_path={folder}",
                 "--model-option", f"{model}.max_new_tokens=8"]  # fmt: skip
    with running_server(*args) as server:
        yield server


def fields_for(model: str, prompt_type: str) -> dict[str, str]:
    custom = prompt_type in model_info(model).custom_prompt
    return {"model": model, "prompt_type": prompt_type, **({"custom_prompt": "Read the total"} if custom else {})}


async def test_every_prompt_type_answers_and_an_unknown_one_names_those_there_are(server: Server) -> None:
    async with aiohttp.ClientSession() as s:
        for model in MODELS:
            info = model_info(model)
            for prompt_type in info.prompt_types:
                code, body = await post_ocr(s, server.url, PAGE, **fields_for(model, prompt_type))
                assert code == 200 and body["prompt_type"] == prompt_type, (model, body)
                assert body["metadata"]["model"] == model and body["raw_text"] is not None
            code, body = await post_ocr(s, server.url, PAGE, model=model, prompt_type="describe")
            assert code == 400 and all(t in body["error"] for t in info.prompt_types), body
            code, default = await post_ocr(s, server.url, PAGE, model=model)
            assert code == 200 and default["prompt_type"] == "document", default


def test_openai_sdk_plain_and_streamed_give_the_same_text(server: Server) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=240)
    assert {m.id for m in client.models.list().data} == set(MODELS)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(PAGE)}}]}]
    for model in MODELS:
        answer = client.chat.completions.create(model=model, messages=messages)
        assert answer.model == model and answer.usage.completion_tokens > 0
        chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True))
        joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert joined == answer.choices[0].message.content, model


async def test_ocr_pdf_reads_every_page_with_each_model(server: Server) -> None:
    pdf = scanned_pdf([render_text(["one"], size=16), render_text(["two"], size=16)])
    async with aiohttp.ClientSession() as s:
        for model in MODELS:
            form = aiohttp.FormData()
            form.add_field("file", pdf, filename="scan.pdf", content_type="application/pdf")
            form.add_field("model", model)
            async with s.post(f"{server.url}/ocr-pdf", data=form) as resp:
                body = await resp.json()
            assert resp.status == 200 and body["page_count"] == 2, (model, body)
            assert [p["page"] for p in body["pages"]] == [1, 2] and body["metadata"]["model"] == model


async def test_requests_sent_together_get_what_they_get_one_by_one(server: Server) -> None:
    pages = [render_text([f"page {i}"], size=12 + 4 * i) for i in range(4)]
    prompt_types = ["free", "table", "document", "formula"]
    async with aiohttp.ClientSession() as s:
        for model in MODELS:
            sent = [(p, fields_for(model, t)) for p, t in zip(pages, prompt_types)]
            alone = [await post_ocr(s, server.url, p, **f) for p, f in sent]
            together = await asyncio.gather(*(post_ocr(s, server.url, p, **f) for p, f in sent))
            for (code_a, a), (code_b, b) in zip(alone, together):
                assert code_a == code_b == 200
                assert (a["raw_text"], a["text"]) == (b["raw_text"], b["text"]), model


async def test_alternating_models_all_answer_each_in_its_own_segment(server: Server) -> None:
    async with aiohttp.ClientSession() as s:
        for model in (*MODELS, *MODELS):
            code, body = await post_ocr(s, server.url, PAGE, model=model, prompt_type="free")
            assert code == 200 and body["metadata"]["model"] == model
        status = await get_json(s, f"{server.url}/gpu/status")
    by_model = {m["model"]: m for m in status["models"]}
    assert set(by_model) == set(MODELS)
    for model, st in by_model.items():
        assert st["state"] == "resident" and st["shared_memory_bytes"] > 0, st
        assert st["segment"] and model in st["segment"]
    assert sorted(m["segment"] for m in by_model.values()) == sorted(segments_of(server.pid))
