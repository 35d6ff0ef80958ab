"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (SSE streaming too).

The OpenAI SDK, LiteLLM, docling and paperless-gpt call a vision model this way (vLLM serves
DeepSeek-OCR so). A request carries one image or PDF as an ``image_url`` (or ``file``) part; the
text parts choose the task (``supervisor.api.openai.prompts``). The answer's content is the model's
raw output, as vLLM gives it: a streamed answer joins to exactly the same text. Errors use
OpenAI's error object. Every request reaches the model through its owner task, like ``/ocr``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from supervisor.api.openai.prompts import options_for
from supervisor.api.openai.shapes import PAGE_JOIN, ChatRequest, finish_reason, page_text, usage
from supervisor.api.openai.stream import stream_completion
from supervisor.api.shared import admit, openai_errors, parse_keep_alive, served_lifecycle
from supervisor.core.service import SERVICE, Service
from supervisor.documents.pages import read_pages
from supervisor.http.body_budget import expect_continue
from supervisor.http.errors import ClientError
from supervisor.http.image_urls import load_url
from supervisor.http.json_body import read_json
from supervisor.http.request_log import log_ocr
from supervisor.http.responses import json_response

log = logging.getLogger("dsocr.supervisor.openai")


def _created(service: Service) -> int:
    return int(time.time() - (time.monotonic() - service.started))


def _model_card(service: Service, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _created(service), "owned_by": "dsocr"}


@openai_errors
async def list_models(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return json_response({"object": "list", "data": [_model_card(service, name) for name in service.lifecycles]})


@openai_errors
async def get_model(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    lc = served_lifecycle(service, request.match_info["model"])
    return json_response(_model_card(service, lc.model))


def _parts(messages: Any) -> tuple[list[str], list[Any]]:
    """The text parts and the image/file URLs of the user messages."""
    if not isinstance(messages, list) or not messages:
        raise ClientError(400, "'messages' must be a non-empty list")
    texts: list[str] = []
    urls: list[Any] = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise ClientError(400, "each message must be an object with a 'role'")
        if message["role"] != "user":
            continue  # system prompts and earlier answers do not choose the task
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise ClientError(400, "a message's 'content' must be a string or a list of parts")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == "image_url":
                image = part.get("image_url")
                urls.append(image.get("url") if isinstance(image, dict) else image)
            elif kind == "file":
                file = part.get("file")
                urls.append(file.get("file_data") if isinstance(file, dict) else None)
            else:
                raise ClientError(400, f"unsupported content part type {kind!r}: use 'text', 'image_url' or 'file'")
    return texts, urls


def _check_sampling(body: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None and temperature != 0:
        raise ClientError(400, "only greedy decoding is served: 'temperature' must be 0 or absent")
    n = body.get("n")
    if n is not None and n != 1:
        raise ClientError(400, "'n' must be 1: greedy decoding gives one answer")


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientError(400, "'max_tokens' must be a positive integer")
    return value


async def parse_chat(request: web.Request, service: Service) -> ChatRequest:
    if len(service.lifecycles) == 1:
        admit(service.lifecycles[service.default_model])  # before reading a large body
    body = await read_json(request, service.settings)
    lc = served_lifecycle(service, body.get("model"))
    admit(lc)
    _check_sampling(body)
    texts, urls = _parts(body.get("messages"))
    if len(urls) != 1:
        raise ClientError(400, f"send exactly one image or PDF per request (an 'image_url' part); got {len(urls)}")
    options = options_for(lc.model, "\n".join(t for t in texts if t))
    max_tokens = _max_tokens(body)
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    stream = body.get("stream") is True
    stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    return ChatRequest(
        lc, await load_url(urls[0], service.settings), options, stream=stream,
        include_usage=bool(stream_options.get("include_usage")), keep_alive=parse_keep_alive(body.get("keep_alive")),
    )  # fmt: skip


@openai_errors
async def chat_completions(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    chat = await parse_chat(request, service)
    if chat.stream:
        return await stream_completion(request, chat, service)
    t0 = time.perf_counter()
    pages = [p async for p in read_pages(chat.lc, service.settings, chat.document, chat.options,
                                         keep_alive=chat.keep_alive)]  # fmt: skip
    results = [p.result for p in pages]
    log_ocr(chat.lc.model, len(pages), time.perf_counter() - t0, 200, request["request_id"])
    return json_response({
        "id": chat.id,
        "object": "chat.completion",
        "created": chat.created,
        "model": chat.lc.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": PAGE_JOIN.join(page_text(r) for r in results)},
            "logprobs": None,
            "finish_reason": finish_reason(results),
        }],
        "usage": usage(results),
    })  # fmt: skip


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions, expect_handler=expect_continue)
