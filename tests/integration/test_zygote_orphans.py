"""A supervisor killed with SIGKILL leaves no zygote and no engine behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import orjson

from tests.helpers import ROOT, child_env, pid_gone, wait_until

# what the service does with the zygote: start it, fork engines through it, then wait for a kill
HOLDER = """
import asyncio, sys, orjson
from supervisor.core.children import ChildRegistry
from supervisor.core.engine_handle import EngineHandle
from supervisor.core.zygote import Zygote

async def main():
    zygote = Zygote(log_level="WARNING")
    await zygote.start(ChildRegistry())
    engines = [EngineHandle(log_level="WARNING", threads=1, launcher=zygote.launch) for _ in range(2)]
    for engine in engines:
        await engine.spawn()
    print(orjson.dumps({"zygote": zygote.pid, "engines": [e.pid for e in engines]}).decode(), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_killed_holder_leaves_no_zygote_and_no_engine() -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE)
    pids: list[int] = []
    try:
        line = holder.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the holder exited with {holder.wait(30)}"
        started = orjson.loads(line)
        pids = [started["zygote"], *started["engines"]]
        assert all(not pid_gone(pid) for pid in pids)
        holder.send_signal(signal.SIGKILL)  # no cleanup code of ours runs
        holder.wait(30)
        assert wait_until(lambda: all(pid_gone(pid) for pid in pids), 30), [p for p in pids if not pid_gone(p)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        holder.wait(30)
        for pid in pids:  # only on failure: never leave them running
            if not pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
