"""One real ppocr server for the client tests (the model loaded once), and the documents they send."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import aiohttp
import pytest

from tests.integration.server import Server, render_text, running_server
from tests.pdfs import scanned_pdf

SECOND_PAGE = ["Second page 77"]


@pytest.fixture(scope="package")
def server() -> Iterator[Server]:
    with running_server("--idle-timeout", "0") as server:

        async def preload() -> None:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{server.url}/gpu/load") as resp:
                    assert resp.status == 200, await resp.text()

        asyncio.run(preload())
        yield server


@pytest.fixture(scope="package")
def page_png() -> bytes:
    return render_text()


@pytest.fixture(scope="package")
def two_page_pdf(page_png: bytes) -> bytes:
    return scanned_pdf([page_png, render_text(SECOND_PAGE)])


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
