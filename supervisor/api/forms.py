"""Multipart uploads read within limits: total bytes over every part, parts, time.

The whole body counts against one limit (the file's limit plus a small allowance for the text
fields), whether or not the client sent a Content-Length, so a chunked body of many small fields
cannot grow without bound; a body that takes longer than ``--body-timeout`` gets 408.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from supervisor.core.settings import Settings
from supervisor.documents.pdf import is_pdf
from supervisor.http.errors import CLIENT_GONE, ClientError

MAX_FIELD_BYTES = 64 * 1024  # one text field
MAX_FIELDS_BYTES = 256 * 1024  # all text fields together
MAX_PARTS = 64
_CHUNK = 256 * 1024


@dataclass
class Form:
    data: bytes
    filename: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def is_pdf(self) -> bool:
        return is_pdf(self.data)


async def read_form(request: web.Request, settings: Settings, file_field: str = "file") -> Form:
    """The upload in ``file_field`` and the text fields; 4xx for anything out of bounds."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ClientError(415, f"send the file as multipart/form-data with a '{file_field}' field")
    limit = settings.max_upload_bytes + MAX_FIELDS_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ClientError(413, f"upload of {request.content_length} bytes exceeds the limit of {limit} bytes")
    try:
        return await asyncio.wait_for(_read(request, settings.max_upload_bytes, file_field), settings.body_timeout)
    except asyncio.TimeoutError:
        raise ClientError(408, f"the upload took longer than {settings.body_timeout:g}s") from None


class _Budget:
    def __init__(self, file_limit: int) -> None:
        self.file_limit = file_limit
        self.fields_left = MAX_FIELDS_BYTES
        self.parts = 0


async def _read(request: web.Request, file_limit: int, file_field: str) -> Form:
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as exc:
        raise ClientError(400, f"malformed multipart body: {exc}") from None
    data: bytes | None = None
    filename = ""
    fields: dict[str, str] = {}
    budget = _Budget(file_limit)
    try:
        while (part := await reader.next()) is not None:
            budget.parts += 1
            if budget.parts > MAX_PARTS:
                raise ClientError(413, f"more than {MAX_PARTS} parts in the form")
            if part.name == file_field and data is None:
                data = await _read_limited(part, file_limit, f"upload exceeds the limit of {file_limit} bytes")
                filename = _valid_utf8(part.filename or "")
            else:
                raw = await _read_limited(
                    part, min(MAX_FIELD_BYTES, budget.fields_left),
                    f"form field over the limit of {MAX_FIELD_BYTES} bytes ({MAX_FIELDS_BYTES} for all fields together)",
                )  # fmt: skip
                budget.fields_left -= len(raw)
                if not part.name:
                    continue
                try:
                    fields[part.name] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    hint = f"; send the file in the '{file_field}' field" if part.filename is not None else ""
                    raise ClientError(400, f"form field {part.name!r} is not UTF-8{hint}") from None
    except (ValueError, AssertionError, BadHttpMessage) as exc:
        # BadHttpMessage: a part's headers are invalid (control characters, a line too long...)
        raise ClientError(400, f"malformed multipart body: {getattr(exc, 'message', exc)}") from None
    except ConnectionResetError:
        # the client went away mid-upload: nobody reads this answer, but it is no server error
        raise ClientError(CLIENT_GONE, "the connection closed before the upload was complete") from None
    if data is None:
        raise ClientError(400, f"no '{file_field}' field in the form")
    if not data:
        raise ClientError(400, "the uploaded file is empty")
    return Form(data, filename, fields)


def _valid_utf8(text: str) -> str:
    """``text`` with the bytes aiohttp could not decode (kept as surrogates, which orjson refuses
    to write) replaced by U+FFFD: the file name goes back in the JSON answer."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


async def _read_limited(part: Any, limit: int, message: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ClientError(413, message)
        chunks.append(chunk)
    return b"".join(chunks)


# the upstream UI's modes -> our prompt types
MODES = {
    "doc": "document",
    "ocr": "ocr",
    "plain": "free",
    "chart": "figure",
    "image": "describe",
    "find": "find",
    "custom": "freeform",
}


def upstream_fields(fields: dict[str, str]) -> dict[str, str]:
    """``fields`` with the upstream's ``mode`` and ``search_text`` turned into ``prompt_type`` and
    ``find_term`` (our names win when both are given). An empty optional field is one not given:
    HTML forms and Swagger's "Try it out" send every input, filled or not; an empty ``prompt_type``
    (the task itself) is still refused as one the model lacks."""
    out = {key: value for key, value in fields.items() if value != "" or key == "prompt_type"}
    mode = out.pop("mode", None)
    if mode is not None and "prompt_type" not in out:
        if mode not in MODES:
            raise ClientError(400, f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        out["prompt_type"] = MODES[mode]
    search_text = out.pop("search_text", None)
    if search_text is not None and "find_term" not in out:
        out["find_term"] = search_text
    return out
