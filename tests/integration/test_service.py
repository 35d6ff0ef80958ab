"""The HTTP service end to end: real `dsocr serve` processes on 127.0.0.1, real engines, real OCR."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from ipc.weights import WeightStore, list_segments, segment_name, unlink_segment
from tests.integration.server import (
    LINES,
    get_json,
    pid_alive,
    post_json,
    post_ocr,
    render_text,
    running_server,
    segments_of,
    wait_until,
)  # fmt: skip

EXPECTED = "\n".join(LINES)
PAGE = render_text()
TINY = render_text(["x"], size=12)
# a model that takes 2 s per request, to hold an inference open while something else happens
SLOW = ("--model", "synthetic", "--model-option", "synthetic.gb=0.01", "--model-option", "synthetic.delay_s=2")

pytestmark = pytest.mark.timeout(180)


async def status(session: aiohttp.ClientSession, url: str) -> dict:
    return await get_json(session, f"{url}/gpu/status")


async def test_seed_flow_health_ocr_offload_release() -> None:
    with running_server("--idle-timeout", "0") as server:
        url = server.url
        async with aiohttp.ClientSession() as s:
            health = await get_json(s, f"{url}/health")
            assert health["status"] == "healthy" and health["model_location"] == "unloaded"
            assert health["backend"] == "cpu"
            for key in ("platform", "gpu_manager", "idle_time", "device", "timeout",
                        "gpu_memory_allocated", "gpu_memory_reserved"):  # fmt: skip
                assert key in health

            code, body = await post_ocr(s, url, PAGE)
            assert code == 200 and body["success"] is True
            assert body["text"] == EXPECTED
            assert body["image_dims"]["w"] > 0 and len(body["boxes"]) == 2
            assert all(len(b["box"]) == 4 for b in body["boxes"])

            st = await status(s, url)
            assert st["state"] == "resident" and st["model_location"] == "cpu"
            assert st["engine_pid"] in server.engine_pids() and st["shared_memory_bytes"] > 10_000_000

            off = await post_json(s, f"{url}/gpu/offload")
            assert off["status"] == "offloaded"
            st = await status(s, url)
            assert st["state"] == "cached" and st["model_location"] == "cpu"

            code, body = await post_ocr(s, url, PAGE)
            assert code == 200 and body["text"] == EXPECTED

            rel = await post_json(s, f"{url}/gpu/release")
            assert rel["status"] == "released"
            st = await status(s, url)
            assert st["state"] == "unloaded" and st["engine_pid"] is None and st["shared_memory_bytes"] == 0
            assert segments_of(server.pid) == []

            code, body = await post_ocr(s, url, PAGE)
            assert code == 200 and body["text"] == EXPECTED
        assert server.stop() == 0
        assert segments_of(server.pid) == []


async def test_idle_timeout_offloads_and_engine_idle_timeout_stops_engine() -> None:
    with running_server("--idle-timeout", "1", "--engine-idle-timeout", "1") as server:
        async with aiohttp.ClientSession() as s:
            code, _ = await post_ocr(s, server.url, TINY)
            assert code == 200
            engine = (await status(s, server.url))["engine_pid"]
            assert engine is not None

            async def state() -> dict:
                return await status(s, server.url)

            deadline = time.monotonic() + 15
            st = await state()
            while st["state"] != "cached" and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                st = await state()
            assert st["state"] == "cached"
            while st["engine_pid"] is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                st = await state()
            assert st["engine_pid"] is None and st["state"] == "cached"
            assert wait_until(lambda: not pid_alive(engine), 5)
            assert st["shared_memory_bytes"] > 0  # the weights stay for a fast restore

            code, body = await post_ocr(s, server.url, PAGE)
            assert code == 200 and body["text"] == EXPECTED
            assert (await state())["engine_pid"] not in (None, engine)


async def test_after_request_policy_leaves_model_cached() -> None:
    with running_server("--offload-policy", "after-request") as server:
        async with aiohttp.ClientSession() as s:
            for _ in range(2):
                code, body = await post_ocr(s, server.url, PAGE)
                assert code == 200 and body["text"] == EXPECTED
                assert (await status(s, server.url))["state"] == "cached"


async def test_offload_during_inference_waits_for_it() -> None:
    with running_server(*SLOW) as server:
        async with aiohttp.ClientSession() as s:
            await post_ocr(s, server.url, TINY)  # load first: the next one is only the 2 s inference
            infer = asyncio.create_task(post_ocr(s, server.url, TINY))
            await asyncio.sleep(0.5)
            assert (await status(s, server.url))["state"] == "resident"
            t0 = time.monotonic()
            health_started = time.monotonic()
            health = await get_json(s, f"{server.url}/health")
            assert time.monotonic() - health_started < 1.0 and health["status"] == "healthy"
            off = await post_json(s, f"{server.url}/gpu/offload")
            assert not infer.done() or time.monotonic() - t0 >= 0.5
            code, body = await infer
            assert code == 200 and body["success"] is True
            assert off["models"] == ["synthetic"]
            assert (await status(s, server.url))["state"] == "cached"


async def test_engine_killed_mid_request_costs_only_that_request() -> None:
    with running_server(*SLOW) as server:
        async with aiohttp.ClientSession() as s:
            await post_ocr(s, server.url, TINY)
            engine = (await status(s, server.url))["engine_pid"]
            infer = asyncio.create_task(post_ocr(s, server.url, TINY))
            await asyncio.sleep(0.5)
            os.kill(engine, signal.SIGKILL)
            code, body = await infer
            assert code == 502 and body["success"] is False and "engine" in body["error"]
            st = await status(s, server.url)
            assert st["state"] == "cached" and st["engine_pid"] is None
            code, body = await post_ocr(s, server.url, TINY)
            assert code == 200 and body["success"] is True
            assert (await status(s, server.url))["engine_pid"] not in (None, engine)


async def test_request_timeout_kills_and_respawns_engine() -> None:
    with running_server(*SLOW, "--request-timeout", "0.6") as server:
        async with aiohttp.ClientSession() as s:
            code, body = await post_ocr(s, server.url, TINY)  # load + first inference
            assert code == 504 and "longer than 1.2s" in body["error"]
            st = await status(s, server.url)
            assert st["state"] == "cached" and st["engine_pid"] is None


async def test_a_fresh_engine_gets_a_double_budget_so_one_timeout_does_not_cascade() -> None:
    # 1.5 s inferences against a 1 s timeout: a warm engine times out, a fresh one (cold caches,
    # first inference after a restart) has 2 s
    slow = ("--model", "synthetic", "--model-option", "synthetic.gb=0.01", "--model-option", "synthetic.delay_s=1.5")
    with running_server(*slow, "--request-timeout", "1") as server:
        async with aiohttp.ClientSession() as s:
            assert (await post_ocr(s, server.url, TINY))[0] == 200  # fresh engine
            code, body = await post_ocr(s, server.url, TINY)  # warm: times out, engine killed
            assert code == 504, body
            code, body = await post_ocr(s, server.url, TINY)  # restored in a fresh engine
            assert code == 200, body


async def test_concurrent_uploads_all_get_their_text() -> None:
    pages = [render_text([f"Order {1000 + i} paid"]) for i in range(20)]
    with running_server() as server:
        async with aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(post_ocr(s, server.url, page) for page in pages))
    for i, (code, body) in enumerate(results):
        assert code == 200, body
        assert body["text"] == f"Order {1000 + i} paid"


async def test_full_queue_answers_503_with_retry_after() -> None:
    with running_server(*SLOW, "--queue-size", "1") as server:
        async with aiohttp.ClientSession() as s:
            await post_ocr(s, server.url, TINY)

            async def one() -> tuple[int, str | None]:
                form = aiohttp.FormData()
                form.add_field("file", TINY, filename="x.png")
                async with s.post(f"{server.url}/ocr", data=form) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Retry-After")

            results = await asyncio.gather(*(one() for _ in range(5)))
    codes = sorted(code for code, _ in results)
    assert codes.count(200) == 2, codes  # one running, one waiting
    assert codes.count(503) == 3 and all(ra for code, ra in results if code == 503)


async def test_sigterm_finishes_in_flight_request_and_leaves_nothing() -> None:
    with running_server(*SLOW) as server:
        async with aiohttp.ClientSession() as s:
            await post_ocr(s, server.url, TINY)
            engines = server.engine_pids()
            infer = asyncio.create_task(post_ocr(s, server.url, TINY))
            await asyncio.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            code, body = await infer
            assert code == 200 and body["success"] is True
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        assert segments_of(server.pid) == []
        assert wait_until(lambda: not any(pid_alive(pid) for pid in engines), 5)


def test_supervisor_killed_engine_exits_and_next_server_removes_segments() -> None:
    with running_server() as first:

        async def warm() -> None:
            async with aiohttp.ClientSession() as s:
                assert (await post_ocr(s, first.url, TINY))[0] == 200

        asyncio.run(warm())
        engines = first.engine_pids()
        assert engines and segments_of(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait(10)
        assert wait_until(lambda: not any(pid_alive(pid) for pid in engines), 10), "orphan engine"
        leftover = segments_of(first.pid)
        assert leftover  # the dead supervisor could not clean up...
        with running_server() as second:

            async def check() -> None:
                async with aiohttp.ClientSession() as s:
                    await get_json(s, f"{second.url}/health")

            asyncio.run(check())
            assert wait_until(lambda: segments_of(first.pid) == [], 5)  # ...the next one did


def test_supervisor_does_not_import_torch_and_stays_small() -> None:
    with running_server() as server:

        async def go() -> int:
            async with aiohttp.ClientSession() as s:
                assert (await post_ocr(s, server.url, PAGE))[0] == 200
                return (await status(s, server.url))["engine_pid"]

        engine = asyncio.run(go())
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "libtorch" not in maps and "libtorch" in Path(f"/proc/{engine}/maps").read_text()
        rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                      if line.startswith("VmRSS:"))  # fmt: skip
        assert rss_kb < 100 * 1024, f"supervisor uses {rss_kb} kB"


def test_orphan_segment_of_dead_pid_is_removed_at_start() -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = segment_name(dead.pid, "ppocr")
    WeightStore.from_arrays(name, [("w", "U8", (4,), b"abcd")]).close()
    try:
        with running_server() as server:
            assert wait_until(lambda: name not in list_segments(), 5)
            assert server.proc.poll() is None
    finally:
        unlink_segment(name)


async def test_stop_keeps_weights_and_the_next_request_restores_in_a_new_engine() -> None:
    with running_server() as server:
        async with aiohttp.ClientSession() as s:
            assert (await post_ocr(s, server.url, PAGE))[0] == 200
            first = (await status(s, server.url))["engine_pid"]
            stop = await post_json(s, f"{server.url}/gpu/stop")
            assert stop["models"] == ["ppocr"]
            assert wait_until(lambda: not pid_alive(first), 5)
            st = await status(s, server.url)
            assert st["state"] == "cached" and st["engine_pid"] is None and st["shared_memory_bytes"] > 0
            # nothing is kept running for the model: no engine, no standby
            assert [c for c in st["children"] if c["role"] == "engine"] == []
            code, body = await post_ocr(s, server.url, PAGE)
            assert code == 200 and body["text"] == EXPECTED
            after = await status(s, server.url)
            assert after["engine_pid"] not in (None, first)
            async with s.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            # the new engine restored from shared memory: one load in all, one restore
            assert 'dsocr_transitions_total{model="ppocr",transition="load"} 1.0' in text
            assert 'dsocr_transitions_total{model="ppocr",transition="restore"} 1.0' in text
        async with aiohttp.ClientSession() as s:
            await post_json(s, f"{server.url}/gpu/release")
        assert segments_of(server.pid) == []


async def test_several_models_each_with_its_own_state() -> None:
    with running_server("--model", "ppocr", "--model", "synthetic", "--model-option", "synthetic.gb=0.01") as server:
        async with aiohttp.ClientSession() as s:
            code, body = await post_ocr(s, server.url, PAGE)
            assert code == 200 and body["text"] == EXPECTED and body["metadata"]["model"] == "ppocr"
            code, body = await post_ocr(s, server.url, TINY, model="synthetic")
            assert code == 200 and body["text"].startswith("synthetic") and body["metadata"]["model"] == "synthetic"
            st = await status(s, server.url)
            assert [m["model"] for m in st["models"]] == ["ppocr", "synthetic"]
            assert all(m["state"] == "resident" for m in st["models"])
            await post_json(s, f"{server.url}/gpu/offload?model=synthetic")
            states = {m["model"]: m["state"] for m in (await status(s, server.url))["models"]}
            assert states == {"ppocr": "resident", "synthetic": "cached"}
            code, body = await post_ocr(s, server.url, TINY, model="nope")
            assert code == 400 and "unknown model" in body["error"]
            await post_json(s, f"{server.url}/gpu/release")
            assert segments_of(server.pid) == []
