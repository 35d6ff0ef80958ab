"""A bounded soak: a few hundred OCR requests from a dozen clients at once, with offloads, engine
stops and releases thrown in at random (seeded), against one real ppocr server.

Every OCR answer must be the right text or a clean 503 (queue full). Afterwards the status must be
consistent with the processes that really run, and after a final release nothing may be left: no
segment, no engine, and the supervisor's memory back near where it was after the first request.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.integration.server import (
    Server,
    descendants,
    get_json,
    pid_alive,
    render_text,
    running_server,
    segments_of,
    wait_until,
)  # fmt: skip

pytestmark = pytest.mark.timeout(300)

SEED = 20261124
CLIENTS = 12
OCR_REQUESTS = 200
CONTROLS = 12  # /gpu/offload, /gpu/stop and /gpu/release calls, mixed in among the requests
TEXTS = [f"Order {1000 + 37 * i} paid" for i in range(6)]
PAGES = {text: render_text([text]) for text in TEXTS}


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def engine_children(server: Server) -> set[int]:
    """Live processes below the supervisor (engines, a zygote, multiprocess's resource tracker once
    an engine was spawned: the registry lists it too), engines remembered for cleanup."""
    server.engine_pids()
    return descendants(server.pid)


async def ocr(s: aiohttp.ClientSession, url: str, text: str) -> tuple[int, dict, str | None]:
    form = aiohttp.FormData()
    form.add_field("file", PAGES[text], filename="page.png", content_type="image/png")
    async with s.post(f"{url}/ocr", data=form) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers.get("Retry-After")


def test_soak_mixed_requests_and_transitions() -> None:
    rng = random.Random(SEED)
    plan: list[tuple[str, str]] = [("ocr", rng.choice(TEXTS)) for _ in range(OCR_REQUESTS)]
    plan += [(rng.choice(["offload", "stop", "release"]), "") for _ in range(CONTROLS)]
    rng.shuffle(plan)

    # one torch thread: on a busy 2-core machine two OpenMP threads per inference fight the other
    # processes and one request can take seconds instead of 0.1 s (this test is about correctness)
    with running_server("--queue-size", "64", "--idle-timeout", "0", env={"OMP_NUM_THREADS": "1"}) as server:
        url = server.url

        async def soak() -> tuple[list[str], Counter[str], float]:
            problems: list[str] = []
            outcomes: Counter[str] = Counter()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
                code, body, _ = await ocr(s, url, TEXTS[0])  # the first request loads the model
                assert code == 200 and body["text"] == TEXTS[0], body
                baseline = rss_kb(server.pid)

                work: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
                for item in plan:
                    work.put_nowait(item)

                async def client(n: int) -> None:
                    while not work.empty():
                        kind, text = work.get_nowait()
                        try:
                            if kind == "ocr":
                                code, body, retry = await ocr(s, url, text)
                                if code == 200 and body.get("success") is True and body.get("text") == text:
                                    outcomes["ok"] += 1
                                elif code == 503 and body.get("success") is False and body.get("error") and retry:
                                    outcomes["busy"] += 1
                                else:
                                    problems.append(f"client {n}: {text!r} -> {code} {str(body)[:300]}")
                            else:
                                async with s.post(f"{url}/gpu/{kind}") as resp:
                                    body = await resp.json(content_type=None)
                                    if resp.status != 200:
                                        problems.append(f"client {n}: /gpu/{kind} -> {resp.status} {body}")
                                outcomes[kind] += 1
                        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                            problems.append(f"client {n}: {kind} {text!r} raised {exc!r}")

                await asyncio.gather(*(client(n) for n in range(CLIENTS)))
                await check_status_matches_processes(s, server)

                # a final release: nothing of the model may be left, the supervisor's memory neither
                async with s.post(f"{url}/gpu/release") as resp:
                    assert resp.status == 200, await resp.text()
                st = await get_json(s, f"{url}/gpu/status")
                assert st["state"] == "unloaded" and st["engine_pid"] is None and st["shared_memory_bytes"] == 0, st
                assert segments_of(server.pid) == []
                allowed = {c["pid"] for c in st["children"] if c["role"] != "engine"}
                assert wait_until(lambda: engine_children(server) <= allowed, 15), (engine_children(server), st)
                return problems, outcomes, (rss_kb(server.pid) - baseline) / 1024

        t0 = time.monotonic()
        problems, outcomes, rss_growth_mb = asyncio.run(soak())
        elapsed = time.monotonic() - t0
        log = server.output()
    print(f"soak: {dict(outcomes)} in {elapsed:.0f}s, supervisor RSS {rss_growth_mb:+.1f} MB")
    assert not problems, "\n".join(problems[:20])
    assert outcomes["ok"] + outcomes["busy"] == OCR_REQUESTS and outcomes["ok"] > 0, outcomes
    assert sum(outcomes[k] for k in ("offload", "stop", "release")) == CONTROLS, outcomes
    assert rss_growth_mb < 30, f"supervisor RSS grew by {rss_growth_mb:.1f} MB"
    assert "Traceback" not in log, log


async def check_status_matches_processes(s: aiohttp.ClientSession, server: Server, timeout: float = 60) -> None:
    """What /gpu/status says is what runs: states, the engine and every other child, queue."""
    deadline = time.monotonic() + timeout
    while True:
        st = await get_json(s, f"{server.url}/gpu/status")
        assert st["state"] in ("unloaded", "cached", "resident"), st
        assert st["queue_depth"] == 0, st
        engine = st["engine_pid"]
        assert st["unowned_children"] == [], st
        if st["state"] == "resident":
            assert engine is not None, st
        if st["state"] == "unloaded":
            assert engine is None and st["shared_memory_bytes"] == 0, st
            assert segments_of(server.pid) == []
        else:
            assert st["shared_memory_bytes"] > 0 and len(segments_of(server.pid)) == 1, st
        reported = {c["pid"] for c in st["children"]}
        assert engine is None or engine in reported, st
        assert all(pid_alive(pid) for pid in reported), st
        running = engine_children(server)
        if running == reported:
            return
        assert running >= reported, (running, st)  # everything reported runs, and is our child
        if time.monotonic() > deadline:
            raise AssertionError(f"engines running {running}, status says {st}")
        await asyncio.sleep(0.2)
