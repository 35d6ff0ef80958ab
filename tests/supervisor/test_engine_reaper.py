"""One reaper per engine: only the handle's waiter thread waits for the process (#20).

Two threads reaping one child made a dead engine look alive (a second ``waitpid`` fails, and
``multiprocess`` then reports the process as running). The handle now asks its waiter, never
``is_alive()``, and ``kill`` awaits what the waiter saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading

from supervisor.core.children import ChildRegistry
from supervisor.core.engine_handle import EngineHandle, EngineSpec, Launched, spawn_launcher


class CountingProcess:
    """A real engine process, with every wait on it counted by thread."""

    def __init__(self, process) -> None:  # type: ignore[no-untyped-def]
        self._process = process
        self.joins: list[str] = []
        self.alive_checks = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._process, name)

    def join(self, timeout: float | None = None) -> None:
        self.joins.append(threading.current_thread().name)
        self._process.join(timeout)

    def is_alive(self) -> bool:
        self.alive_checks += 1
        return self._process.is_alive()


async def test_an_engine_killed_from_outside_is_reaped_once_and_leaves_the_registry() -> None:
    counted: list[CountingProcess] = []

    def launcher(spec: EngineSpec) -> Launched:
        launched = spawn_launcher(spec)
        counted.append(CountingProcess(launched.process))
        return Launched(counted[-1], launched.conn, launched.stderr_fd)  # type: ignore[arg-type]

    registry = ChildRegistry()
    handle = EngineHandle(log_level="WARNING", threads=1, launcher=launcher, registry=registry, model="ppocr")
    await handle.spawn()
    pid = handle.pid
    assert pid in registry and handle.alive
    os.kill(pid, signal.SIGKILL)  # the OOM killer
    for _ in range(200):
        if not handle.alive:
            break
        await asyncio.sleep(0.05)
    assert not handle.alive
    assert await handle.kill() == -signal.SIGKILL
    assert pid not in registry
    process = counted[0]
    assert process.joins and all(name.startswith("engine-waiter") for name in process.joins), process.joins
    assert len(process.joins) == 1 and process.alive_checks == 0
