"""A small HTTP client for the CLI: talks to a running dsocr server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson


class ServerUnavailable(RuntimeError):
    """Nothing answers at the URL."""


class ServerError(RuntimeError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _headers() -> dict[str, str]:
    key = os.environ.get("DSOCR_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _call(method: str, url: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), headers=_headers()) as session:
            async with session.request(method, url, **kwargs) as resp:
                raw = await resp.read()
    except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as exc:
        raise ServerUnavailable(f"no dsocr server answers at {url}: {exc or type(exc).__name__}") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ServerError(resp.status, raw[:200].decode("utf-8", "replace")) from None
    if resp.status >= 400:
        raise ServerError(resp.status, body.get("error", "") if isinstance(body, dict) else str(body))
    return body


def get(url: str, timeout: float = 10.0) -> dict[str, Any]:
    return asyncio.run(_call("GET", url, timeout))


def post(url: str, timeout: float = 120.0) -> dict[str, Any]:
    return asyncio.run(_call("POST", url, timeout))


def model_state(url: str, model: str) -> str | None:
    """``model``'s state on the server at ``url`` (``/gpu/status``), or None where it cannot say."""
    try:
        status = get(f"{url.rstrip('/')}/gpu/status", timeout=5.0)
    except (ServerUnavailable, ServerError):
        return None
    found = [m for m in status.get("models") or [status] if isinstance(m, dict) and m.get("model") == model]
    return found[0].get("state") if found else None


def ocr_file(url: str, path: Path, fields: dict[str, str], timeout: float = 600.0) -> dict[str, Any]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", path.read_bytes(), filename=path.name)
    return asyncio.run(_call("POST", url, timeout, data=form))
