"""deepseek-ocr-2 behind a real server: load into shared memory, OCR, offload, engine kill, release."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.integration.server import (
    get_json,
    pid_alive,
    post_json,
    post_ocr,
    render_text,
    running_server,
    segments_of,
    wait_until,
)  # fmt: skip
from tests.tiny_deepseek import build_tiny

PAGE = render_text()
MODEL = "deepseek-ocr-2"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-deepseek-service"))


async def status(s: aiohttp.ClientSession, url: str) -> dict:
    return await get_json(s, f"{url}/gpu/status")


async def test_load_ocr_offload_restore_after_kill_release(tiny: Path) -> None:
    args = ("--model", MODEL, "--idle-timeout", "0",
            "--model-option", f"{MODEL}.model_path={tiny}", "--model-option", f"{MODEL}.max_new_tokens=16")  # fmt: skip
    with running_server(*args) as server:
        url = server.url
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            code, first = await post_ocr(s, url, PAGE, model=MODEL, prompt_type="free")
            assert code == 200, first
            load_s = time.monotonic() - t0
            assert first["success"] and first["raw_text"] and first["metadata"]["model"] == MODEL
            assert first["prompt_type"] == "free" and first["image_dims"]["w"] > 0

            st = await status(s, url)
            assert st["state"] == "resident" and st["shared_memory_bytes"] > 1_000_000
            assert len(segments_of(server.pid)) == 1

            # the model field is optional (one model served); grounding options pass through
            code, find = await post_ocr(s, url, PAGE, prompt_type="find", find_term="Invoice", grounding="false")
            assert code == 200 and find["prompt_type"] == "find"
            code, bad = await post_ocr(s, url, PAGE, prompt_type="poem")
            assert code == 400 and "poem" in bad["error"]
            code, bad = await post_ocr(s, url, PAGE, prompt_type="find")
            assert code == 400 and "find_term" in bad["error"]

            assert (await post_json(s, f"{url}/gpu/offload"))["status"] == "offloaded"
            assert (await status(s, url))["state"] == "cached"
            code, again = await post_ocr(s, url, PAGE, prompt_type="free")
            assert code == 200 and again["raw_text"] == first["raw_text"]  # greedy: same answer

            engine = (await status(s, url))["engine_pid"]
            os.kill(engine, signal.SIGKILL)
            assert wait_until(lambda: not pid_alive(engine), 10)
            deadline = time.monotonic() + 10
            while (await status(s, url))["engine_pid"] == engine and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            t0 = time.monotonic()
            code, restored = await post_ocr(s, url, PAGE, prompt_type="free")
            restore_s = time.monotonic() - t0
            assert code == 200, restored
            assert restored["raw_text"] == first["raw_text"] and restored["text"] == first["text"]
            st = await status(s, url)
            assert st["engine_pid"] not in (None, engine) and st["state"] == "resident"

            assert (await post_json(s, f"{url}/gpu/release"))["status"] == "released"
            st = await status(s, url)
            assert st["state"] == "unloaded" and st["shared_memory_bytes"] == 0
            assert segments_of(server.pid) == []
        print(f"first request (spawn + load + infer) {load_s:.2f}s, after engine kill {restore_s:.2f}s")
        assert server.stop() == 0
        assert segments_of(server.pid) == []


async def test_wrong_model_path_answers_with_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    args = ("--model", MODEL, "--model-option", f"{MODEL}.model_path={missing}")
    with running_server(*args) as server:
        async with aiohttp.ClientSession() as s:
            code, body = await post_ocr(s, server.url, PAGE)
            assert code >= 500 and str(missing) in body["error"], body
            assert segments_of(server.pid) == []
