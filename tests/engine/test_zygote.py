"""Engines forked from the zygote: what they read, their threads, their parent, and the zygote's health."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from ipc import protocol as p
from ipc.errors import only_result
from ipc.weights import unlink_segment
from supervisor.core import zygote as zygote_module
from supervisor.core.children import ChildRegistry
from supervisor.core.engine_handle import EngineDead, EngineHandle, Launcher
from supervisor.core.zygote import Zygote
from tests.helpers import ROOT, SegmentGuard, child_env, pid_gone, render_text, shm  # noqa: F401  (shm is a fixture)

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one zygote (seconds to boot) for the module

TIMEOUT = 120.0  # per request: generous for a loaded 2-core machine, still bounded
LINES = ["Invoice 2041 total 385.20", "Shipped to Berlin"]

Start = Callable[..., Awaitable[EngineHandle]]


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return condition()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zygote() -> AsyncIterator[Zygote]:
    registry = ChildRegistry()
    z = Zygote(log_level="WARNING")
    await z.start(registry)
    pid = z.pid
    assert z.up and pid in registry
    yield z
    await z.close()
    assert pid is not None and pid_gone(pid) and pid not in registry


@pytest_asyncio.fixture(loop_scope="module")
async def engines() -> AsyncIterator[Start]:
    """Starts engines with a launcher, and kills every one after the test, whatever happened."""
    started: list[EngineHandle] = []

    async def start(launcher: Launcher | None, threads: int | None = 1, registry: ChildRegistry | None = None,
                    ) -> EngineHandle:  # fmt: skip
        handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, threads=threads, launcher=launcher,
                              registry=registry)  # fmt: skip
        started.append(handle)
        await handle.spawn()
        return handle

    yield start
    for handle in started:
        await handle.kill()
        assert handle.pid is None or pid_gone(handle.pid)


async def ask(engine: EngineHandle, msg: p.Message) -> dict:
    return await engine.request(msg, timeout=TIMEOUT)


async def test_forked_engine_reads_what_a_spawned_one_reads_with_its_threads(
    zygote: Zygote, engines: Start, shm: SegmentGuard
) -> None:
    pytest.importorskip("engine.models.ppocr")
    image = render_text(LINES)
    segment = shm.name("zygote-ppocr")
    counts = {}
    try:
        spawned = await engines(None)
        await ask(spawned, p.Load(0, "ppocr", segment, "cpu", {}))
        spawned_text = (only_result(await ask(spawned, p.Infer.one(0, "ppocr", {}, image))))["text"]
        assert spawned_text == "\n".join(LINES)
        for threads in (1, 3):
            forked = await engines(zygote.launch, threads)
            assert ppid(forked.pid) == zygote.pid  # forked, not spawned
            await ask(forked, p.Restore(0, "ppocr", segment, "cpu", {}))
            assert (only_result(await ask(forked, p.Infer.one(0, "ppocr", {}, image))))["text"] == spawned_text
            counts[threads] = thread_count(forked.pid)
    finally:
        unlink_segment(segment)
    # the zygote's own default would be one thread per core for both: the setting took effect,
    # so the engine asked for 3 runs at least 2 more worker threads than the one asked for 1
    assert counts[3] - counts[1] >= 2, counts


async def test_forked_engine_is_a_full_engine(zygote: Zygote, engines: Start) -> None:
    registry = ChildRegistry()
    engine = await engines(zygote.launch, registry=registry)
    pid = engine.pid
    assert pid in registry and ppid(pid) == zygote.pid
    assert os.getpgid(pid) == pid  # its own process group
    assert (await ask(engine, p.Stats(0)))["pid"] == pid
    os.kill(pid, signal.SIGKILL)  # a crash: the zygote reaps it and tells us how it ended
    with pytest.raises(EngineDead, match="killed by SIGKILL"):
        await asyncio.wait_for(ask(engine, p.Stats(0)), TIMEOUT)
    assert await engine.kill() == -signal.SIGKILL
    assert pid_gone(pid) and pid not in registry


async def test_zygote_never_initialises_cuda_nor_starts_threads(
    zygote: Zygote, engines: Start, shm: SegmentGuard, tmp_path: Path
) -> None:
    options = {"gb": 0.01, "dir": str(tmp_path)}
    segment = shm.name("zygote-synthetic")
    forked = [await engines(zygote.launch, 2) for _ in range(2)]
    try:
        await ask(forked[0], p.Load(0, "synthetic", segment, "cpu", options))
        await ask(forked[1], p.Restore(0, "synthetic", segment, "cpu", options))
        for engine in forked:  # torch runs in the children, on their own threads
            assert "text" in only_result(await ask(engine, p.Infer.one(0, "synthetic", {}, render_text(LINES))))
    finally:
        unlink_segment(segment)
    facts = await zygote.debug()
    assert facts["pid"] == zygote.pid and facts["up"]
    assert facts["cuda_initialized"] is False
    assert facts["threads"] == 1  # no OpenMP, intra-op or BLAS pool: nothing a fork could inherit half-held
    assert set(facts["children"]) >= {engine.pid for engine in forked}
    assert facts["forked_total"] >= 2 and facts["private_rss_bytes"] > 0
    assert not facts["failed_imports"]


async def test_dead_zygote_is_restarted_and_engines_spawn_meanwhile(engines: Start) -> None:
    registry = ChildRegistry()
    z = Zygote(log_level="WARNING")
    await z.start(registry)
    try:
        first_pid = z.pid
        assert first_pid is not None
        orphan = await engines(z.launch, registry=registry)
        os.kill(first_pid, signal.SIGKILL)
        assert await wait_for(lambda: pid_gone(orphan.pid), 30), "an engine outlived its zygote"
        assert await wait_for(lambda: not z.up, 10)

        spawned = await engines(z.launch, registry=registry)  # while the zygote is down or booting
        assert ppid(spawned.pid) == os.getpid() and z.fallback_spawns == 1
        assert (await ask(spawned, p.Stats(0)))["pid"] == spawned.pid

        assert await wait_for(lambda: z.up, TIMEOUT), "the zygote was not restarted"
        assert z.pid != first_pid and z.restarts == 1
        assert z.pid in registry and await wait_for(lambda: first_pid not in registry, 10)
        forked = await engines(z.launch, registry=registry)
        assert ppid(forked.pid) == z.pid
        assert (await z.debug())["cuda_initialized"] is False
    finally:
        last = z.pid
        await z.close()
    assert last is None or pid_gone(last)
    assert not [c for c in registry.all() if c.role == "zygote"]


async def test_zygote_that_cannot_boot_is_given_up_and_engines_spawn(
    engines: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zygote_module, "ZYGOTE_MODULE", "engine.no_such_zygote")  # exits at once
    registry = ChildRegistry()
    z = Zygote(log_level="WARNING")
    try:
        await z.start(registry)
        assert not z.up
        # restarted after 0.5 s and 1 s, then given up: no restart loop
        assert await wait_for(lambda: z.restarts == zygote_module.MAX_BOOT_FAILURES - 1 and z.pid is None, 30)
        await asyncio.sleep(3)  # the next delay would have been 2 s
        assert z.restarts == zygote_module.MAX_BOOT_FAILURES - 1 and z.pid is None
        assert await wait_for(lambda: len(registry) == 0, 10)  # every try reaped
        spawned = await engines(z.launch, registry=registry)
        assert ppid(spawned.pid) == os.getpid() and z.fallback_spawns == 1
    finally:
        await z.close()


async def test_supervisor_modules_stay_torch_free() -> None:
    code = "import sys, supervisor.core.service, supervisor.core.zygote; print('torch' in sys.modules)"
    run = [sys.executable, "-c", code]
    done = await asyncio.to_thread(subprocess.run, run, cwd=ROOT, env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
