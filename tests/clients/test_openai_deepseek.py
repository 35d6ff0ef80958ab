"""The OpenAI routes in front of deepseek-ocr-2 (a tiny random checkpoint, built here): the upstream
prompt strings reach its prompt types, and a streamed answer joins to the non-streamed one, for an
image and for a PDF whose pages are read together (partial text of a later page waits its turn)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from tests.clients.conftest import data_url
from tests.integration.server import Server, render_text, running_server
from tests.pdfs import scanned_pdf
from tests.tiny_deepseek import build_tiny

MODEL = "deepseek-ocr-2"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def deepseek_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tiny = build_tiny(tmp_path_factory.mktemp("tiny-deepseek-openai"))
    args = ("--model", MODEL, "--idle-timeout", "0", "--max-batch", "2",
            "--model-option", f"{MODEL}.model_path={tiny}", "--model-option", f"{MODEL}.max_new_tokens=12")  # fmt: skip
    with running_server(*args) as server:
        yield server


def ask(server: Server, url: str, text: str | None, stream: bool = False):  # type: ignore[no-untyped-def]
    content: list[dict] = [{"type": "image_url", "image_url": {"url": url}}]
    if text is not None:
        content.append({"type": "text", "text": text})
    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=240)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], stream=stream)


PROMPTS = ("<image>\nFree OCR.", "<image>\n<|grounding|>Convert the document to markdown.",
           "<image>\nLocate <|ref|>Invoice<|/ref|> in the image.", "What is the total?", None)  # fmt: skip


def test_streamed_chunks_join_to_the_answer(deepseek_server: Server) -> None:
    url = data_url(render_text())
    for text in PROMPTS:
        answer = ask(deepseek_server, url, text)
        assert answer.model == MODEL and answer.usage.prompt_tokens > 0, text
        chunks = list(ask(deepseek_server, url, text, stream=True))
        joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert joined == answer.choices[0].message.content, text
        assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_pdf_streams_its_pages_in_order(deepseek_server: Server) -> None:
    pdf = scanned_pdf([render_text(["one"]), render_text(["two", "lines"]), render_text(["three"])])
    url = data_url(pdf, "application/pdf")
    answer = ask(deepseek_server, url, "<image>\nFree OCR.")
    assert answer.choices[0].message.content.count("\n\n") >= 2  # three pages, a blank line between
    joined = "".join(c.choices[0].delta.content or "" for c in ask(deepseek_server, url, "Free OCR.", stream=True)
                     if c.choices)  # fmt: skip
    assert joined == answer.choices[0].message.content


def test_a_find_without_a_term_is_a_400(deepseek_server: Server) -> None:
    with pytest.raises(openai.BadRequestError):
        ask(deepseek_server, data_url(render_text()), "<image>\nLocate <|ref|> <|/ref|> in the image.")
