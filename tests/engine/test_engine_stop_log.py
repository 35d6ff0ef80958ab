"""What the log says when an engine ends: a stop the supervisor asked for reads as one, with its
reason ("engine 123 stopped (release)"), never as a crash; a real death still says it died and how
("engine 123 died (killed by SIGKILL)"). Real engine processes through EngineHandle."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

from supervisor.core.engine_handle import EngineHandle
from tests.helpers import pid_gone

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def engine(caplog: pytest.LogCaptureFixture) -> AsyncIterator[EngineHandle]:
    """A spawned engine, killed after the test whatever happened; the log captured from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    handle = EngineHandle(log_level="WARNING", boot_timeout=60.0)
    try:
        await handle.spawn()
        yield handle
    finally:
        await handle.kill()


def engine_lines(caplog: pytest.LogCaptureFixture, pid: int) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if f"engine {pid} " in r.getMessage()]


async def test_a_stop_we_asked_for_is_logged_with_its_reason(
    engine: EngineHandle, caplog: pytest.LogCaptureFixture
) -> None:
    pid = engine.pid
    await engine.kill("release")
    await engine.kill()  # a second call (the lifecycle's close) says nothing more
    assert pid is not None and pid_gone(pid)
    lines = [(level, text) for level, text in engine_lines(caplog, pid) if "started" not in text]
    assert len(lines) == 1, lines
    level, text = lines[0]
    assert level == logging.INFO and text.startswith(f"engine {pid} stopped (release) in "), text
    assert not any(word in text for word in ("exited", "killed by", "died")), text


async def test_a_death_nobody_asked_for_still_says_it_died_and_how(
    engine: EngineHandle, caplog: pytest.LogCaptureFixture
) -> None:
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # not us: a crash, as the OOM killer would do it
    deadline = time.monotonic() + 15
    while engine.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await engine.kill()  # the lifecycle reaps a dead engine this way
    lines = engine_lines(caplog, pid)
    warnings = [text for level, text in lines if level == logging.WARNING]
    assert warnings == [f"engine {pid} died (killed by SIGKILL)"], lines
    assert not any("stopped" in text for level, text in lines if level >= logging.INFO), lines
