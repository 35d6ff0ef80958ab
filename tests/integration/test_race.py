"""The race: 30 OCR clients and random offload/stop/release/load calls against one real server.

Before the single-writer rewrite, this left a live engine that /gpu/status did not show (a release
cancelled a starting standby, and the spawn did not kill its child). Now: only documented status
codes, every 200 has the right text, and at the end the processes that run are exactly the
children /gpu/status lists, and no segment exists that it does not report.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import aiohttp
import pytest

from tests.integration.server import descendants, get_json, render_text, running_server, segments_of, wait_until

pytestmark = pytest.mark.timeout(300)

SEED = 20261126
OCR_CLIENTS = 30
CONTROL_CLIENTS = 3
SECONDS = 60.0
TEXTS = [f"Parcel {2000 + 53 * i} sent" for i in range(6)]
PAGES = {text: render_text([text]) for text in TEXTS}
CONTROLS = ("offload", "stop", "release", "load")


async def _ocr(s: aiohttp.ClientSession, url: str, text: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", PAGES[text], filename="page.png", content_type="image/png")
    async with s.post(f"{url}/ocr", data=form) as resp:
        return resp.status, await resp.json(content_type=None)


def test_racing_clients_and_controls_leave_status_and_processes_in_agreement() -> None:
    with running_server("--queue-size", "64", "--idle-timeout", "0") as server:
        url = server.url

        async def race() -> tuple[list[str], Counter[str]]:
            problems: list[str] = []
            seen: Counter[str] = Counter()
            deadline = time.monotonic() + SECONDS
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:

                async def ocr_client(n: int) -> None:
                    rng = random.Random(SEED + n)
                    while time.monotonic() < deadline:
                        text = rng.choice(TEXTS)
                        try:
                            code, body = await _ocr(s, url, text)
                        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                            problems.append(f"ocr {n}: {exc!r}")
                            continue
                        seen[f"ocr {code}"] += 1
                        if code == 200:
                            if body.get("text") != text:
                                problems.append(f"ocr {n}: wanted {text!r}, got {body.get('text')!r}")
                        elif code != 503 or body.get("success") is not False or not body.get("error"):
                            problems.append(f"ocr {n}: {code} {str(body)[:300]}")

                async def control_client(n: int) -> None:
                    rng = random.Random(SEED - n)
                    while time.monotonic() < deadline:
                        await asyncio.sleep(rng.uniform(0, 0.8))
                        kind = rng.choice(CONTROLS)
                        async with s.post(f"{url}/gpu/{kind}") as resp:
                            body = await resp.json(content_type=None)
                            seen[f"{kind} {resp.status}"] += 1
                            if resp.status != 200:
                                problems.append(f"control {n}: /gpu/{kind} -> {resp.status} {body}")

                await asyncio.gather(
                    *(ocr_client(n) for n in range(OCR_CLIENTS)), *(control_client(n) for n in range(CONTROL_CLIENTS))
                )
                # quiet now: what status says must be what runs, exactly
                st = await get_json(s, f"{url}/gpu/status")
                for _ in range(50):
                    if st["queue_depth"] == 0 and st["state"] in ("unloaded", "cached", "resident"):
                        break
                    await asyncio.sleep(0.2)
                    st = await get_json(s, f"{url}/gpu/status")
                reported = {c["pid"] for c in st["children"]}
                running = descendants(server.pid)
                if running != reported:
                    problems.append(f"running {sorted(running)} but status lists {sorted(reported)}: {st}")
                if st["unowned_children"]:
                    problems.append(f"unowned children: {st['unowned_children']}")
                engines = [c["pid"] for c in st["children"] if c["role"] == "engine"]
                if engines != ([st["engine_pid"]] if st["engine_pid"] else []):
                    problems.append(f"engines {engines} but engine_pid {st['engine_pid']}")
                segments = segments_of(server.pid)
                if (len(segments) == 1) != (st["shared_memory_bytes"] > 0) or len(segments) > 1:
                    problems.append(f"segments {segments} but status reports {st['shared_memory_bytes']} bytes")
                async with s.post(f"{url}/gpu/release") as resp:
                    assert resp.status == 200
                if not wait_until(lambda: not [p for p in descendants(server.pid) if p in set(engines)], 10):
                    problems.append("an engine outlived the final release")
                if segments_of(server.pid):
                    problems.append(f"segments left after release: {segments_of(server.pid)}")
            return problems, seen

        problems, seen = asyncio.run(race())
        log = server.output()
    print(f"race: {dict(seen)}")
    assert not problems, "\n".join(problems[:20])
    assert seen["ocr 200"] > 10 and all(seen[f"{k} 200"] for k in CONTROLS), seen
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]
