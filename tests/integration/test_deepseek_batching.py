"""8 concurrent clients through a real server run as one deepseek-ocr-2 batch and get, token for token,
what the same requests get one by one (tiny random model, greedy, CPU, ``--max-batch 8``)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.integration.server import post_ocr, running_server
from tests.tiny_deepseek import MIXED_REQUESTS as CLIENTS
from tests.tiny_deepseek import build_tiny
from tests.tiny_deepseek import text_png as png

MODEL = "deepseek-ocr-2"
pytestmark = pytest.mark.timeout(300)


KEYS = ("text", "raw_text", "boxes", "lines")


async def test_eight_concurrent_clients_get_the_one_by_one_answers(tmp_path) -> None:
    tiny = build_tiny(tmp_path / "tiny")
    args = ("--model", MODEL, "--max-batch", "8", "--idle-timeout", "300", "--engine-threads", "1",
            "--model-option", f"{MODEL}.model_path={tiny}", "--model-option", f"{MODEL}.max_new_tokens=24")  # fmt: skip
    with running_server(*args) as server:
        async with aiohttp.ClientSession() as s:
            code, _ = await post_ocr(s, server.url, CLIENTS[0][0], prompt_type="free")  # loads the model
            assert code == 200
            # a long request holds the engine while the 8 clients queue up behind it
            blocker = asyncio.create_task(post_ocr(s, server.url, CLIENTS[0][0], prompt_type="free", max_tokens="400"))
            await asyncio.sleep(0.3)
            together = await asyncio.gather(*(post_ocr(s, server.url, image, **f) for image, f in CLIENTS))
            assert (await blocker)[0] == 200
            alone = [await post_ocr(s, server.url, image, **fields) for image, fields in CLIENTS]
    for i, ((code_b, batched), (code_a, single)) in enumerate(zip(together, alone)):
        assert code_b == code_a == 200, (i, batched, single)
        assert single["metadata"]["timing"]["batch"] == 1
        assert {k: batched[k] for k in KEYS} == {k: single[k] for k in KEYS}, i
    sizes = [r["metadata"]["timing"]["batch"] for _, r in together]
    assert max(sizes) > 1, sizes  # they really ran together (8 when they all queued behind the blocker)


async def test_partial_text_streams_token_by_token_and_joins_to_the_answer(tmp_path) -> None:
    tiny = build_tiny(tmp_path / "tiny")
    args = ("--model", MODEL, "--idle-timeout", "300", "--engine-threads", "1",
            "--model-option", f"{MODEL}.model_path={tiny}", "--model-option", f"{MODEL}.max_new_tokens=48")  # fmt: skip
    with running_server(*args) as server:
        async with aiohttp.ClientSession() as s:
            form = aiohttp.FormData()
            form.add_field("prompt_type", "free")
            form.add_field("file", png(180, 120, "a"), filename="a.png", content_type="image/png")
            async with s.post(f"{server.url}/ocr/stream?partial=1", data=form) as resp:
                assert resp.status == 200
                lines = [orjson.loads(line) async for line in resp.content if line.strip()]
    partials = [line["partial"] for line in lines if "partial" in line]
    page = next(line for line in lines if "pages" in line and "partial" not in line)
    assert len(partials) >= 2, lines  # more than one piece: streamed, not sent at the end
    assert "".join(partials) == page["raw_text"]
    assert lines[-1]["done"] is True and lines[-1]["success"] is True
