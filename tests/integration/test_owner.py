"""One writer per model, seen from outside: a real server, real engines, real timings of behaviour.

- control commands are served between inferences, not after the whole queue;
- stop/release racing a request leave no engine behind, and /gpu/status lists every child;
- repeated load failures put the model in `failed` (503 naming it) until a release;
- operator faults: a cache dir that cannot work stops `serve` with one line; a corrupt cached
  conversion is rebuilt; an unknown model is refused at start.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.integration.server import (
    descendants,
    get_json,
    post_json,
    post_ocr,
    render_text,
    running_server,
    segments_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(300)

TINY = render_text(["x"], size=12)
PAGE = render_text()
EXPECTED = "Invoice 2041 total 385.20\nShipped to Berlin"


async def test_offload_behind_ten_queued_requests_waits_only_for_the_running_one() -> None:
    delay = 1.5
    args = (
        "--model",
        "synthetic",
        "--model-option",
        "synthetic.gb=0.01",
        "--model-option",
        f"synthetic.delay_s={delay}",
    )
    with running_server(*args) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            assert (await post_ocr(s, server.url, TINY))[0] == 200  # loaded
            queued = [asyncio.create_task(post_ocr(s, server.url, TINY)) for _ in range(10)]
            await asyncio.sleep(0.5)  # the first of them runs, nine wait
            st = await get_json(s, f"{server.url}/gpu/status")
            assert st["queue_waiting"] >= 8, st
            t0 = time.monotonic()
            off = await post_json(s, f"{server.url}/gpu/offload")
            took = time.monotonic() - t0
            assert off["models"] == ["synthetic"]
            # the whole queue would take 10 x 1.5 s; the offload waits for the running one only
            assert took < 2 * delay, took
            results = await asyncio.gather(*queued)
            assert all(code == 200 for code, _ in results), results  # the rest restored and ran


async def test_ocr_stop_release_cycles_leave_no_engine_behind() -> None:
    with running_server() as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            for _ in range(5):
                ocr = asyncio.create_task(post_ocr(s, server.url, PAGE))
                await asyncio.sleep(0.05)
                stop = asyncio.create_task(post_json(s, f"{server.url}/gpu/stop"))
                release = asyncio.create_task(post_json(s, f"{server.url}/gpu/release"))
                code, body = await ocr
                assert code == 200 and body["text"] == EXPECTED, body
                await stop
                await release
            st = await get_json(s, f"{server.url}/gpu/status")
            reported = {c["pid"] for c in st["children"]}
            running = descendants(server.pid)
            assert running == reported, (running, st["children"])
            assert st["unowned_children"] == []
            assert [c for c in st["children"] if c["role"] == "engine"] == [] or st["engine_pid"] is not None
            await post_json(s, f"{server.url}/gpu/release")
            st = await get_json(s, f"{server.url}/gpu/status")
            assert [c for c in st["children"] if c["role"] == "engine"] == [] and st["engine_pid"] is None
            assert wait_until(
                lambda: not any(_is_engine(pid) for pid in descendants(server.pid, with_tracker=False)), 10
            )
            assert segments_of(server.pid) == []


def _is_engine(pid: int) -> bool:
    try:
        return b"zygote" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def test_repeated_load_failures_make_the_model_failed_until_a_release(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    args = ("--model", "deepseek-ocr-2", "--model-option", f"deepseek-ocr-2.model_path={missing}",
            "--max-load-failures", "2")  # fmt: skip
    with running_server(*args) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            for _ in range(2):
                code, body = await post_ocr(s, server.url, PAGE)
                assert code == 503 and str(missing) in body["error"], body
            st = await get_json(s, f"{server.url}/gpu/status")
            assert st["state"] == "failed" and str(missing) in st["failure"] and st["load_failures"] == 2, st
            engines_before = len(descendants(server.pid, with_tracker=False))
            code, body = await post_ocr(s, server.url, PAGE)
            assert code == 503 and "failed after 2 load failures" in body["error"] and "release" in body["error"]
            assert len(descendants(server.pid, with_tracker=False)) <= engines_before  # no engine was started for it
            async with s.get(f"{server.url}/ready") as resp:
                assert resp.status == 503 and "deepseek-ocr-2 failed" in " ".join((await resp.json())["reasons"])
            await post_json(s, f"{server.url}/gpu/release")
            st = await get_json(s, f"{server.url}/gpu/status")
            assert st["state"] == "unloaded" and st["failure"] is None
            code, body = await post_ocr(s, server.url, PAGE)  # tries again
            assert code == 503 and str(missing) in body["error"]
        log = server.output()
        assert "never retrieved" not in log and "Traceback" not in log, log[-3000:]


async def test_concurrent_requests_during_the_last_load_failure_are_answered_and_release_recovers(
    tmp_path: Path,
) -> None:
    # v0.2's owner died in the batch after the 3rd failure: queued requests and the release hung (#20)
    from tests.tiny_deepseek import build_tiny

    checkpoint = tmp_path / "arrives-later"
    args = ("--model", "deepseek-ocr-2", "--model-option", f"deepseek-ocr-2.model_path={checkpoint}",
            "--model-option", "deepseek-ocr-2.max_new_tokens=4", "--max-load-failures", "3")  # fmt: skip
    with running_server(*args) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            answers = await asyncio.wait_for(asyncio.gather(*(post_ocr(s, server.url, TINY) for _ in range(8))), 90)
            assert all(code == 503 for code, _ in answers), answers
            st = await get_json(s, f"{server.url}/gpu/status")
            assert st["state"] == "failed", st
            t0 = time.monotonic()
            async with s.post(f"{server.url}/gpu/release?model=deepseek-ocr-2") as resp:
                assert resp.status == 200, await resp.text()
            assert time.monotonic() - t0 < 10
            build_tiny(checkpoint)  # the weights are there now
            code, body = await post_ocr(s, server.url, TINY, prompt_type="free")
            assert code == 200 and body["success"], body
            assert (await get_json(s, f"{server.url}/gpu/status"))["state"] == "resident"
        log = server.output()
        assert "owner step failed" not in log and "never retrieved" not in log, log[-3000:]


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.cli", "serve", "--host", "127.0.0.1", "--port", "1", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_a_cache_dir_that_cannot_work_stops_serve_with_one_line(tmp_path: Path, kind: str) -> None:
    if kind == "file":
        cache = tmp_path / "a-file"
        cache.write_text("x")
    else:
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root writes anywhere: make it a path under a file instead
            cache = tmp_path / "a-file-too"
            cache.write_text("x")
            cache = cache / "sub"
    done = _serve(env={"DSOCR_CACHE_DIR": str(cache)})
    assert done.returncode == 64, done  # the CLI's "wrong usage"
    assert "cache dir" in done.stderr and "DSOCR_CACHE_DIR" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unknown_model_is_refused_at_start() -> None:
    done = _serve("--model", "nosuch")
    assert done.returncode == 64
    assert "unknown model 'nosuch'" in done.stderr and "ppocr" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_model_option_outside_its_choices_is_refused_at_start() -> None:
    done = _serve("--model-option", "ppocr.backend=tensorrt")
    assert done.returncode == 64
    assert "ppocr.backend='tensorrt': one of auto, onnxruntime, torch" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_a_corrupt_cached_conversion_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with running_server(env={"DSOCR_CACHE_DIR": str(cache)}) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            code, body = await post_ocr(s, server.url, PAGE)
            assert code == 200 and body["text"] == EXPECTED
            await post_json(s, f"{server.url}/gpu/release")
            converted = sorted(cache.rglob("*.safetensors"))
            assert converted
            for path in converted:  # truncated in the middle of its tensors
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            code, body = await post_ocr(s, server.url, PAGE)
            assert code == 200 and body["text"] == EXPECTED, body
        assert "converting it again" in server.output()


async def test_preload_loads_at_start_and_ready_waits_for_it() -> None:
    args = ("--model", "synthetic", "--model-option", "synthetic.gb=0.01", "--model-option", "synthetic.bind_delay_s=3",
            "--preload")  # fmt: skip
    with running_server(*args) as server:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{server.url}/ready") as resp:
                body = await resp.json()
                assert resp.status == 503 and "still loading" in " ".join(body["reasons"]), body
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with s.get(f"{server.url}/ready") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.2)
            st = await get_json(s, f"{server.url}/gpu/status")
            assert st["state"] == "resident", st  # no request was needed
