"""Per-request keep_alive (as Ollama's) on ``/ocr`` and the ``/v1`` routes, and preloading with
``POST /gpu/load``."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.clients.conftest import data_url
from tests.integration.server import LINES, get_json, post_json, post_ocr, running_server

pytestmark = pytest.mark.timeout(240)


async def state(session: aiohttp.ClientSession, url: str) -> str:
    return (await get_json(session, f"{url}/gpu/status"))["state"]


async def wait_state(session: aiohttp.ClientSession, url: str, wanted: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await state(session, url) == wanted:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_keep_alive_overrides_the_idle_timeout_until_the_next_request(page_png: bytes) -> None:
    with running_server("--idle-timeout", "1") as server:
        async with aiohttp.ClientSession() as session:
            assert await state(session, server.url) == "unloaded"
            loaded = await post_json(session, f"{server.url}/gpu/load?model=ppocr")
            assert loaded["models"] == ["ppocr"] and await state(session, server.url) == "resident"

            # -1: stays resident past the 1 s idle timeout
            status, body = await post_ocr(session, server.url, page_png, keep_alive="-1")
            assert status == 200 and body["text"].splitlines() == LINES
            await asyncio.sleep(2.5)
            assert await state(session, server.url) == "resident"

            # 0 on a /v1 route: offloaded right after the answer
            chat = {"model": "ppocr", "keep_alive": 0, "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(page_png)}}]}]}  # fmt: skip
            async with session.post(f"{server.url}/v1/chat/completions", json=chat) as resp:
                assert resp.status == 200
            assert await wait_state(session, server.url, "cached", timeout=5)

            # the Mistral route takes it too; then the server's own idle timeout applies again
            ocr = {
                "model": "ppocr",
                "keep_alive": -1,
                "document": {"type": "image_url", "image_url": data_url(page_png)},
            }
            async with session.post(f"{server.url}/v1/ocr", json=ocr) as resp:
                assert resp.status == 200
            await asyncio.sleep(2.5)
            assert await state(session, server.url) == "resident"
            status, _ = await post_ocr(session, server.url, page_png)
            assert status == 200
            assert await wait_state(session, server.url, "cached", timeout=10)
