"""``/ready`` and the SIGTERM drain on real ``dsocr serve`` processes; the scaling metrics."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from supervisor.core.lifecycle import State
from supervisor.http.readiness import ModelLoad, unready_reasons
from tests.integration.server import post_ocr, render_text, running_server

pytestmark = pytest.mark.timeout(180)

PAGE = render_text()
# 2 s per request: holds the queue open long enough to look at it
SLOW = ("--model", "synthetic", "--model-option", "synthetic.gb=0.01", "--model-option", "synthetic.delay_s=2")


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict | str]:
    """One GET on a new connection each time, so a closed listener shows as a refused connection."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            is_json = resp.content_type == "application/json"
            return resp.status, await (resp.json() if is_json else resp.text())


def test_unready_reasons() -> None:
    ok = ModelLoad("ppocr", State.RESIDENT, None, 0)
    assert unready_reasons(False, [ok], 4) == []
    assert unready_reasons(True, [ok], 4) == ["shutting down"]
    failed = ModelLoad("ds", State.FAILED, "out of memory", 0)
    assert unready_reasons(False, [ok, failed], 4) == ["model ds failed: out of memory"]
    full = ModelLoad("ppocr", State.RESIDENT, None, 4)
    assert unready_reasons(False, [full], 4) == ["model ppocr queue full: 4 waiting, limit 4"]
    assert unready_reasons(False, [ModelLoad("ppocr", State.UNLOADED, None, 3)], 4) == []


async def test_sigterm_turns_ready_off_before_the_listener_closes() -> None:
    with running_server("--drain-seconds", "3") as server:
        code, body = await get(f"{server.url}/ready")
        assert code == 200 and body["ready"] is True and body["reasons"] == []
        assert body["models"]["ppocr"] == {"state": "unloaded", "queue_waiting": 0}

        server.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        seen: list[tuple[float, int | str]] = []
        ocr_during_drain = None
        for _ in range(200):  # bounded: 200 polls of 50 ms are far more than the 3 s drain
            try:
                code, body = await get(f"{server.url}/ready")
            except aiohttp.ClientConnectionError:
                seen.append((time.monotonic() - sent, "refused"))
                break
            seen.append((time.monotonic() - sent, code))
            if code == 503 and ocr_during_drain is None:
                assert body["ready"] is False and body["reasons"] == ["shutting down"]
                # still serving while draining: real work gets done
                async with aiohttp.ClientSession() as s:
                    ocr_during_drain = await post_ocr(s, server.url, PAGE)
            await asyncio.sleep(0.05)
        codes = [c for _, c in seen]
        assert codes[0] == 503, seen  # the first answer after SIGTERM already says "not ready"
        assert "refused" in codes and 200 not in codes, seen
        refused_at = next(t for t, c in seen if c == "refused")
        assert refused_at >= 2.5, seen  # listening went on for the drain
        assert ocr_during_drain is not None and ocr_during_drain[0] == 200
        assert ocr_during_drain[1]["text"].startswith("Invoice 2041")
        assert server.proc.wait(30) == 0


async def test_a_second_sigterm_ends_the_drain() -> None:
    with running_server("--drain-seconds", "60") as server:
        server.proc.send_signal(signal.SIGTERM)
        code = 0
        for _ in range(100):  # until the first SIGTERM has been taken
            code, _ = await get(f"{server.url}/ready")
            if code == 503:
                break
            await asyncio.sleep(0.05)
        assert code == 503
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert time.monotonic() - t0 < 30  # far less than the 60 s drain


async def test_full_queue_makes_ready_503_and_counts_refusals() -> None:
    key = {"Authorization": "Bearer k3y"}
    with running_server(*SLOW, "--queue-size", "1", "--api-key", "k3y") as server:
        url = server.url
        code, _ = await get(f"{url}/ready")  # probes need no API key
        assert code == 200
        assert (await get(f"{url}/metrics"))[0] == 401
        async with aiohttp.ClientSession(headers=key) as s:
            first = asyncio.create_task(post_ocr(s, url, PAGE))
            await asyncio.sleep(0.5)
            second = asyncio.create_task(post_ocr(s, url, PAGE))
            state = None
            for _ in range(100):  # until the second waits behind the first
                code, state = await get(f"{url}/ready")
                if code == 503:
                    break
                await asyncio.sleep(0.05)
            assert code == 503, state
            assert state["reasons"] == ["model synthetic queue full: 1 waiting, limit 1"]
            _, metrics = await get(f"{url}/metrics", key)
            assert 'dsocr_queue_waiting_requests{model="synthetic"} 1.0' in metrics
            assert 'dsocr_queue_depth{model="synthetic"} 2.0' in metrics

            refused, _ = await post_ocr(s, url, PAGE)  # a third while one runs and one waits
            assert refused == 503
            assert [(await first)[0], (await second)[0]] == [200, 200]

        code, state = await get(f"{url}/ready")
        assert code == 200 and state["models"]["synthetic"]["queue_waiting"] == 0
        _, metrics = await get(f"{url}/metrics", key)
        assert 'dsocr_queue_refused_requests_total{model="synthetic"} 1.0' in metrics
        assert 'dsocr_queue_waiting_requests{model="synthetic"} 0.0' in metrics
        assert "# TYPE dsocr_queue_refused_requests_total counter" in metrics
