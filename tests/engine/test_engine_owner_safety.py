"""Engines that cannot be lost or killed by their own pipe: real processes through EngineHandle.

- the pipe reader only moves bytes: a hammer of Stats during loads, inferences, offloads and
  restores never kills the engine (the reader used to read the runtime's dict while the main
  thread changed it);
- a spawn that is cancelled kills the child it started; every child is in the registry until it
  is reaped;
- an engine that dies at start says why, with its last stderr lines;
- batches answer per item (one bad image fails only itself) and stream partial text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ipc import protocol as p
from ipc.errors import only_result
from ipc.weights import unlink_segment
from supervisor.core import engine_handle
from supervisor.core.children import ChildRegistry
from supervisor.core.engine_handle import EngineDead, EngineHandle
from tests.helpers import SegmentGuard, pid_gone, shm, text_png, wait_until  # noqa: F401

MODEL = "synthetic"
IMAGE = text_png()
TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def registry() -> AsyncIterator[ChildRegistry]:
    reg = ChildRegistry()
    yield reg
    for child in reg.all():  # whatever a test left: killed, and the test fails below
        import os
        import signal

        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def options(tmp_path: Path) -> dict[str, Any]:
    return {"gb": 0.02, "dir": str(tmp_path)}


async def test_stats_hammer_during_transitions_never_kills_the_engine(
    registry: ChildRegistry, shm: SegmentGuard, options: dict[str, Any]
) -> None:
    handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, registry=registry)
    await handle.spawn()
    segment = shm.name(MODEL)
    stop = asyncio.Event()
    answered = 0

    async def hammer() -> None:
        nonlocal answered
        while not stop.is_set():
            stats = await handle.request(p.Stats(0), timeout=TIMEOUT)
            assert stats["pid"] == handle.pid
            answered += 1

    hammers = [asyncio.create_task(hammer()) for _ in range(4)]
    try:
        await handle.request(p.Load(0, MODEL, segment, "cpu", options), timeout=TIMEOUT)
        for _ in range(15):
            only_result(await handle.request(p.Infer.one(0, MODEL, {}, IMAGE), timeout=TIMEOUT))
            await handle.request(p.Offload(0, MODEL), timeout=TIMEOUT)
            await handle.request(p.Restore(0, MODEL, segment, "cpu", options), timeout=TIMEOUT)
    finally:
        stop.set()
        await asyncio.gather(*hammers, return_exceptions=True)
    assert handle.alive and answered > 50
    await handle.kill()
    unlink_segment(segment)
    assert len(registry) == 0 and pid_gone(handle.pid)  # type: ignore[arg-type]


async def test_batch_answers_per_item_and_streams(registry: ChildRegistry, shm: SegmentGuard, options: dict) -> None:
    handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, registry=registry)
    await handle.spawn()
    segment = shm.name(MODEL)
    try:
        loaded = await handle.request(p.Load(0, MODEL, segment, "cpu", options), timeout=TIMEOUT)
        assert loaded["batch_limit"] == 1
        partials: list[tuple[int, str]] = []
        msg = p.Infer(0, MODEL, [{}, {}, {}], images=[IMAGE, b"not an image", IMAGE], stream=True)
        reply = await handle.request(msg, timeout=TIMEOUT, on_partial=lambda i, t: partials.append((i, t)))
        first, bad, third = reply["results"]
        assert first["text"].startswith("synthetic ") and third["text"] == first["text"]
        assert bad["error"]["type"] == p.WireError.BAD_INPUT
        assert first["timing"]["batch"] == 2  # the two good images ran together
        assert handle.alive
    finally:
        await handle.kill()
        unlink_segment(segment)


async def test_cancelled_spawn_kills_its_child(registry: ChildRegistry) -> None:
    handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, registry=registry)
    task = asyncio.create_task(handle.spawn())
    assert await asyncio.to_thread(wait_until, lambda: handle.pid is not None, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = handle.pid
    assert pid is not None and await asyncio.to_thread(wait_until, lambda: pid_gone(pid), 10)
    assert len(registry) == 0


async def test_engine_that_dies_at_start_says_why(registry: ChildRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_handle, "ENGINE_MODULE", "tests.engine.crashing_engine")
    handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, registry=registry)
    with pytest.raises(EngineDead) as info:
        await handle.spawn()
    message = str(info.value)
    assert "failed to start" in message and "CUDA driver version is insufficient" in message, message
    assert len(registry) == 0 and pid_gone(handle.pid)  # type: ignore[arg-type]
