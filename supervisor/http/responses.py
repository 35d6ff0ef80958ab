"""JSON answers: one function for every route and every error."""

from __future__ import annotations

import orjson
from aiohttp import web


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)
