"""The zygote in a real ``serve`` process: engines forked from it, reported, and gone with the server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import aiohttp

from tests.helpers import pid_gone, wait_until
from tests.integration.server import LINES, child_pids, get_json, post_ocr, render_text, running_server

BOOT_S = 120.0  # the zygote imports torch and transformers: seconds on a loaded 2-core machine


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def wait_zygote_up(s: aiohttp.ClientSession, url: str) -> dict:
    deadline = time.monotonic() + BOOT_S
    while time.monotonic() < deadline:
        zygote = (await get_json(s, f"{url}/gpu/status"))["zygote"]
        if zygote["up"]:
            return zygote
        await asyncio.sleep(0.2)
    raise AssertionError(f"zygote not up in {BOOT_S}s: {zygote}")


def test_engines_fork_from_the_zygote_and_die_with_the_killed_server() -> None:
    with running_server("--model", "ppocr", "--engine-threads", "1") as server:

        async def serve_one() -> tuple[int, int]:
            async with aiohttp.ClientSession() as s:
                zygote = await wait_zygote_up(s, server.url)
                assert zygote["pid"] in child_pids(server.pid) and zygote["private_rss_bytes"] > 0
                code, body = await post_ocr(s, server.url, render_text())
                assert code == 200 and body["text"] == "\n".join(LINES), body
                st = await get_json(s, f"{server.url}/gpu/status")
                engine = st["engine_pid"]
                assert ppid(engine) == zygote["pid"] and st["zygote"]["forks"] >= 1
                roles = {c["pid"]: c["role"] for c in st["children"]}
                assert roles[zygote["pid"]] == "zygote" and roles[engine] == "engine"
                assert all(c["private_rss_bytes"] > 0 for c in st["children"] if c["alive"])
                assert st["unowned_children"] == []
                return zygote["pid"], engine

        zygote, engine = asyncio.run(serve_one())
        assert engine in server.engine_pids()  # remembered for cleanup
        os.kill(server.pid, signal.SIGKILL)  # no cleanup code of the server runs
        server.proc.wait(10)
        assert wait_until(lambda: pid_gone(zygote) and pid_gone(engine), 30), "zygote or engine outlived the server"


def test_health_answers_while_the_zygote_is_stopped_and_an_engine_start_waits_for_it() -> None:
    # v0.2 forked on the event loop: a stopped zygote froze every route for FORK_TIMEOUT_S (#20)
    with running_server("--model", "ppocr", "--engine-threads", "1") as server:

        async def probe() -> list[float]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
                zygote = await wait_zygote_up(s, server.url)
                os.kill(zygote["pid"], signal.SIGSTOP)
                try:
                    ocr = asyncio.create_task(post_ocr(s, server.url, render_text()))
                    await asyncio.sleep(0.2)  # the owner now waits for the fork

                    async def health() -> float:
                        t0 = time.perf_counter()
                        async with s.get(f"{server.url}/health") as resp:
                            assert resp.status == 200
                        return time.perf_counter() - t0

                    probes = []
                    for _ in range(200):  # one every 30 ms for 6 s, each on its own: longer than the fork timeout
                        probes.append(asyncio.create_task(health()))
                        await asyncio.sleep(0.03)
                    latencies = list(await asyncio.gather(*probes))
                    code, body = await ocr  # the fork timed out; the engine was spawned instead
                    assert code == 200 and body["text"] == "\n".join(LINES), body
                finally:
                    with contextlib.suppress(ProcessLookupError):  # the server replaces a stuck zygote
                        os.kill(zygote["pid"], signal.SIGCONT)
                return latencies

        latencies = sorted(asyncio.run(probe()))
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        assert p99 < 0.1, f"/health p99 {p99 * 1000:.0f} ms while the zygote was stopped: {latencies[-5:]}"
        assert "spawning the engine instead" in server.output()
