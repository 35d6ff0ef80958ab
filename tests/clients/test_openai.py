"""The ``openai`` SDK against a real server: models, chat completions (plain and streamed), errors,
per-request keep_alive, and remote image URLs refused by default."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest
from openai import OpenAI

from tests.clients.conftest import SECOND_PAGE, data_url
from tests.helpers import wait_until
from tests.integration.server import LINES, Server, get_json

pytestmark = pytest.mark.timeout(240)


def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="not-needed", max_retries=0, timeout=120)


def image_message(url: str, text: str | None = None) -> list[dict]:
    content: list[dict] = [{"type": "image_url", "image_url": {"url": url}}]
    if text is not None:
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def test_models_lists_every_served_model(server: Server) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["ppocr"]
    assert client(server).models.retrieve("ppocr").owned_by == "dsocr"


def test_unknown_model_is_openais_404_with_the_list(server: Server, page_png: bytes) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).chat.completions.create(model="gpt-4o", messages=image_message(data_url(page_png)))
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["type"] == "not_found_error"
    assert "ppocr" in error["message"]


def test_chat_completion_reads_a_base64_image_plain_and_streamed(server: Server, page_png: bytes) -> None:
    messages = image_message(data_url(page_png), "<image>\nFree OCR.")
    answer = client(server).chat.completions.create(model="ppocr", messages=messages, temperature=0, max_tokens=512)
    text = answer.choices[0].message.content
    assert text == " ".join(LINES)  # free: ppocr joins a block's lines into a paragraph
    assert answer.choices[0].finish_reason == "stop" and answer.object == "chat.completion"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens > 0

    stream = client(server).chat.completions.create(
        model="ppocr", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    assert stream.response.headers["X-Request-ID"] and "Content-Security-Policy" in stream.response.headers
    chunks = list(stream)
    joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert joined == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == answer.usage.total_tokens


def test_upstream_prompt_strings_and_no_text(server: Server, page_png: bytes) -> None:
    for text in ("<image>\n<|grounding|>Convert the document to markdown.", None, "What does it say?"):
        answer = client(server).chat.completions.create(model="ppocr", messages=image_message(data_url(page_png), text))
        # free (paragraphs) or document (markdown: the first line in large type may be a heading)
        content = answer.choices[0].message.content
        assert " ".join(line.lstrip("#").strip() for line in content.splitlines() if line.strip()) == " ".join(LINES), (
            text
        )


def test_a_pdf_as_a_data_url_reads_every_page(server: Server, two_page_pdf: bytes) -> None:
    url = data_url(two_page_pdf, "application/pdf")
    answer = client(server).chat.completions.create(model="ppocr", messages=image_message(url))
    assert answer.choices[0].message.content == " ".join(LINES) + "\n\n" + SECOND_PAGE[0]
    stream = client(server).chat.completions.create(model="ppocr", messages=image_message(url), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == answer.choices[0].message.content


def test_sampling_and_bad_requests_get_openais_error_object(server: Server, page_png: bytes) -> None:
    messages = image_message(data_url(page_png))
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(model="ppocr", messages=messages, temperature=0.7)
    assert "greedy" in caught.value.body["message"] and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="ppocr", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(model="ppocr", messages=image_message("data:image/png;base64,@@@"))
    assert "base64" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="ppocr", messages=image_message(data_url(b"not an image")))


def test_remote_image_urls_are_refused_by_default_naming_the_option(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).chat.completions.create(model="ppocr", messages=image_message("https://example.com/a.png"))
    assert "--allow-remote-images" in caught.value.body["message"]


async def _state(server: Server) -> str:
    async with aiohttp.ClientSession() as session:
        return (await get_json(session, f"{server.url}/gpu/status"))["state"]


def test_keep_alive_zero_offloads_right_after_the_request(server: Server, page_png: bytes) -> None:

    messages = image_message(data_url(page_png))
    client(server).chat.completions.create(model="ppocr", messages=messages, extra_body={"keep_alive": -1})
    time.sleep(0.5)
    assert asyncio.run(_state(server)) == "resident"
    client(server).chat.completions.create(model="ppocr", messages=messages, extra_body={"keep_alive": 0})
    assert wait_until(lambda: asyncio.run(_state(server)) == "cached", 15)
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="ppocr", messages=messages, extra_body={"keep_alive": "soon"})
