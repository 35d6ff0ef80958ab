"""Real engine processes driven through EngineHandle: transitions, kills, bad input, orphans."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc import protocol as p
from ipc.errors import only_result
from ipc.weights import list_segments, unlink_segment
from supervisor.core.engine_handle import EngineDead, EngineFailure, EngineHandle
from tests.helpers import (  # noqa: F401  (shm is a fixture)
    ROOT,
    SegmentGuard,
    child_env,
    pid_gone,
    png_with_size,
    shm,
    text_png,
    wait_until,
)  # fmt: skip

MODEL = "synthetic"
IMAGE = text_png()
TIMEOUT = 60.0  # per request: generous for a loaded 2-core machine, still bounded

Start = Callable[[], Awaitable[EngineHandle]]


@pytest.fixture
async def engines() -> AsyncIterator[Start]:
    """Starts engines, and kills every one of them after the test, whatever happened."""
    started: list[EngineHandle] = []

    async def start() -> EngineHandle:
        handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT)
        started.append(handle)
        await handle.spawn()
        return handle

    yield start
    for handle in started:
        await handle.kill()
        assert handle.pid is None or pid_gone(handle.pid)


@pytest.fixture
def options(tmp_path: Path) -> dict[str, Any]:
    return {"gb": 0.01, "dir": str(tmp_path)}


async def ask(engine: EngineHandle, msg: p.Message) -> dict[str, Any]:
    return await engine.request(msg, timeout=TIMEOUT)


async def wait_dead(engine: EngineHandle, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while engine.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not engine.alive


async def test_restore_after_kill_reads_no_checkpoint(engines: Start, shm: SegmentGuard,
                                                      options: dict[str, Any]) -> None:  # fmt: skip
    segment = shm.name("kill")
    first = await engines()
    loaded = await ask(first, p.Load(0, MODEL, segment, "cpu", options))
    assert loaded["state"] == "resident"
    text = (only_result(await ask(first, p.Infer.one(0, MODEL, {}, IMAGE))))["text"]
    assert text.startswith("synthetic ")

    # The checkpoint's place now holds a directory: reading it (or writing a new one) would fail.
    (checkpoint,) = map(Path, loaded["files"])
    checkpoint.unlink()
    checkpoint.mkdir()

    pid = first.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_dead(first)
    with pytest.raises(EngineDead):
        await ask(first, p.Stats(0))
    assert segment in list_segments()  # the weights outlive the engine

    second = await engines()
    assert second.pid != pid
    restored = await ask(second, p.Restore(0, MODEL, segment, "cpu", options))
    assert restored["state"] == "resident" and restored["weights_bytes"] == loaded["weights_bytes"]
    assert (only_result(await ask(second, p.Infer.one(0, MODEL, {}, IMAGE))))["text"] == text
    assert checkpoint.is_dir()
    await second.kill()
    assert unlink_segment(segment)


async def test_offload_leaves_the_model_cached(engines: Start, shm: SegmentGuard, options: dict[str, Any]) -> None:
    segment = shm.name("offload")
    engine = await engines()
    await ask(engine, p.Load(0, MODEL, segment, "cpu", options | {"delay_s": 2.0}))

    # stats is answered by the reader thread while an inference runs
    infer = asyncio.ensure_future(ask(engine, p.Infer.one(0, MODEL, {}, IMAGE)))
    await asyncio.sleep(0.3)
    busy = await asyncio.wait_for(engine.request(p.Stats(0)), 1.5)
    assert busy["busy_s"] is not None and not infer.done()
    text = only_result(await infer)["text"]

    off = await ask(engine, p.Offload(0, MODEL))
    assert off["state"] == "cached" and off["device_bytes"] == 0
    stats = await ask(engine, p.Stats(0))
    assert stats["pid"] == engine.pid and stats["models"][MODEL]["state"] == "cached"
    with pytest.raises(EngineFailure) as err:
        only_result(await ask(engine, p.Infer.one(0, MODEL, {}, IMAGE)))
    assert err.value.type == p.WireError.NOT_LOADED

    assert (await ask(engine, p.Restore(0, MODEL, segment, "cpu", options)))["state"] == "resident"
    assert (only_result(await ask(engine, p.Infer.one(0, MODEL, {}, IMAGE))))["text"] == text
    await engine.kill()
    assert unlink_segment(segment)


BAD_IMAGES = {
    "empty": b"",
    "truncated": IMAGE[: len(IMAGE) // 2],
    "not an image": b"%PDF-1.7 certainly not a picture\n" * 10,
    "absurd dimensions": png_with_size(30000, 30000),
    "zero size": png_with_size(0, 0),
}


async def test_bad_images_are_bad_input_and_the_engine_lives_on(engines: Start, shm: SegmentGuard,
                                                                 options: dict[str, Any]) -> None:  # fmt: skip
    segment = shm.name("bad")
    engine = await engines()
    await ask(engine, p.Load(0, MODEL, segment, "cpu", options))
    pid = engine.pid
    for label, data in BAD_IMAGES.items():
        with pytest.raises(EngineFailure) as err:
            only_result(await ask(engine, p.Infer.one(0, MODEL, {}, data)))
        assert err.value.type == p.WireError.BAD_INPUT, label
        result = only_result(await ask(engine, p.Infer.one(0, MODEL, {}, IMAGE)))
        assert result["text"].startswith("synthetic ") and engine.pid == pid, label
    await engine.kill()
    assert unlink_segment(segment)


async def test_errors_cross_the_pipe_with_their_types(engines: Start, shm: SegmentGuard,
                                                      options: dict[str, Any]) -> None:  # fmt: skip
    engine = await engines()
    with pytest.raises(EngineFailure) as err:
        await ask(engine, p.Restore(0, MODEL, shm.name("missing"), "cpu", options))
    assert err.value.type == p.WireError.MODEL_ERROR and "does not exist" in err.value.message
    with pytest.raises(EngineFailure) as err:
        await ask(engine, p.Load(0, "no-such-model", shm.name("unknown"), "cpu", {}))
    assert err.value.type == p.WireError.BAD_INPUT
    with pytest.raises(EngineFailure) as err:
        await ask(engine, p.Offload(0, MODEL))
    assert err.value.type == p.WireError.NOT_LOADED


def raw_frame(header: bytes) -> bytes:
    return p.MAGIC + bytes([p.VERSION]) + len(header).to_bytes(4, "big") + header


async def test_malformed_frames_are_dropped_not_fatal(engines: Start) -> None:
    # A header that decoded to anything but a ProtocolError (a JSON string, a reply without its
    # request) used to end the engine's reader thread, and with it the engine.
    engine = await engines()
    for frame in (b"garbage", raw_frame(b'"offload"'), raw_frame(b'{"kind": "reply", "id": 1}')):
        await asyncio.to_thread(engine._send, frame)
    stats = await ask(engine, p.Stats(0))
    assert stats["pid"] == engine.pid and engine.alive


async def test_engine_exits_when_its_pipe_closes(engines: Start) -> None:
    engine = await engines()
    # Shut the supervisor's end of the socket pair down: the engine reads EOF, as when the
    # supervisor closes its end. (A plain close() would not wake our own reader thread.)
    conn = socket.socket(fileno=os.dup(engine._conn.fileno()))
    conn.shutdown(socket.SHUT_RDWR)
    conn.close()
    await wait_dead(engine)
    assert engine._process.exitcode == 0  # it left by itself, cleanly: not killed by anyone


PARENT = """
import asyncio, io, sys
from PIL import Image
from ipc import protocol as p
from supervisor.core.engine_handle import EngineHandle

async def main(segment, folder):
    engine = EngineHandle(log_level="WARNING")
    await engine.spawn()
    options = {"gb": 0.01, "dir": folder, "delay_s": 120}
    await engine.request(p.Load(0, "synthetic", segment, "cpu", options))
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, "PNG")
    busy = asyncio.ensure_future(engine.request(p.Infer.one(0, "synthetic", {}, image.getvalue())))
    await asyncio.sleep(0.5)
    print(engine.pid, flush=True)
    await busy

asyncio.run(main(*sys.argv[1:]))
"""


def test_engine_dies_with_a_killed_supervisor(shm: SegmentGuard, tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no chance to stop its engine: the engine must go by itself.

    The engine is inside a 120 s inference, so it cannot notice the closed pipe by reading it:
    only its parent-death watch (PR_SET_PDEATHSIG, the parent-pid poll) can end it in time.
    """
    segment = shm.name("orphan")
    command = [sys.executable, "-c", PARENT, segment, str(tmp_path)]
    parent = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=child_env())
    engine_pid = None
    try:
        ready, _, _ = select.select([parent.stdout], [], [], TIMEOUT)
        assert ready, "the supervisor process did not start its engine"
        engine_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert not pid_gone(engine_pid)
        parent.kill()
        parent.wait(10)
        assert wait_until(lambda: pid_gone(engine_pid), 5), f"engine {engine_pid} outlived its supervisor"
        assert segment in list_segments()  # removing it is the next supervisor's job
    finally:
        parent.kill()
        parent.wait(10)
        if engine_pid is not None and not pid_gone(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)
        unlink_segment(segment)


async def test_ppocr_restore_reads_the_same_text(engines: Start, shm: SegmentGuard, tmp_path: Path) -> None:
    from engine.models.ppocr.adapter import GRAPHS_DIR, WEIGHTS_DIR, WEIGHTS_FILE

    cache = tmp_path / "cache"
    options = {"cache_dir": str(cache)}  # the engine converts into a cache of this test's own
    words = "Invoice 2024 total 44.96 EUR"
    image = text_png(words)

    segment = shm.name("ppocr")
    first = await engines()
    loaded = await ask(first, p.Load(0, "ppocr", segment, "cpu", options))
    assert all(Path(f).is_relative_to(cache) for f in loaded["files"])
    text = (only_result(await ask(first, p.Infer.one(0, "ppocr", {}, image))))["text"]
    assert text == words
    shutil.rmtree(cache)  # a restore that looked for the checkpoint would now convert again
    await first.kill()

    second = await engines()
    await ask(second, p.Restore(0, "ppocr", segment, "cpu", options))
    assert (only_result(await ask(second, p.Infer.one(0, "ppocr", {}, image))))["text"] == text
    # the checkpoint was not converted again; the weightless ONNX Runtime graphs were exported
    # afresh from the tensors in the segment (a new engine keeps none in memory)
    assert not (cache / WEIGHTS_DIR / WEIGHTS_FILE).exists()
    assert len(list((cache / WEIGHTS_DIR / GRAPHS_DIR).glob("*.onnx"))) == 3
    await second.kill()
    assert unlink_segment(segment)
