"""JSON request bodies (the OpenAI- and Mistral-shaped routes) read within the upload limits."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from supervisor.core.settings import Settings
from supervisor.http.errors import CLIENT_GONE, ClientError


def body_limit(settings: Settings) -> int:
    # base64 makes a file 4/3 larger; a little more for the rest of the JSON
    return settings.max_upload_bytes * 4 // 3 + 64 * 1024


async def read_json(request: web.Request, settings: Settings) -> dict[str, Any]:
    """The JSON object in the body; 400 for anything else, 413 past the limit, 408 when too slow."""
    limit = body_limit(settings)
    if request.content_length is not None and request.content_length > limit:
        raise ClientError(413, f"request body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    try:
        raw = await asyncio.wait_for(_read(request, limit), settings.body_timeout)
    except asyncio.TimeoutError:
        raise ClientError(408, f"the request body took longer than {settings.body_timeout:g}s") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ClientError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError(400, "the body must be a JSON object")
    return body


async def _read(request: web.Request, limit: int) -> bytes | bytearray:
    """The body, refused with 413 as soon as it passes ``limit`` (a chunked one is counted as it
    comes). With a Content-Length it is read into one buffer of that size: no list of chunks
    joined at the end, which held the body twice (issue 20: a 50 MB JSON body took 63 -> 217 MB)."""
    length = request.content_length
    buffer = bytearray(length) if length is not None else None
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.read(256 * 1024):
            end = size + len(chunk)
            if end > limit or (buffer is not None and end > len(buffer)):
                raise ClientError(413, f"request body exceeds the limit of {limit} bytes")
            if buffer is not None:
                buffer[size:end] = chunk
            else:
                chunks.append(chunk)
            size = end
    except ConnectionResetError:
        raise ClientError(CLIENT_GONE, "the connection closed before the body was complete") from None
    if buffer is not None:
        return buffer if size == len(buffer) else buffer[:size]
    return b"".join(chunks)
