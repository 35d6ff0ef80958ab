"""A real ``dsocr serve`` process on 127.0.0.1 for tests: started, waited for, always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from ipc.weights import PREFIX, list_segments, unlink_segment
from tests import helpers
from tests.helpers import pid_gone, wait_until

LINES = ["Invoice 2041 total 385.20", "Shipped to Berlin"]


def render_text(lines: list[str] = LINES, size: int = 32) -> bytes:
    """The two invoice lines by default (see ``tests.helpers.render_text``)."""
    return helpers.render_text(lines, size)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def segments_of(pid: int) -> list[str]:
    return [name for name in list_segments() if name.startswith(f"{PREFIX}{pid}_")]


def child_pids(pid: int) -> list[int]:
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in raw.split()]


def descendants(pid: int, with_tracker: bool = True) -> set[int]:
    """Live processes below ``pid`` (children of every thread, recursively): the zygote, engines,
    engines forked by a zygote, and multiprocess's resource tracker (which a spawned engine
    starts; the registry lists it) unless ``with_tracker`` is false."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                raw = Path(f"/proc/{parent}/task/{tid}/children").read_text()
            except OSError:
                continue
            for child in map(int, raw.split()):
                if child in found:
                    continue
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if (not with_tracker and b"resource_tracker" in cmdline) or not pid_alive(child):
                    continue
                found.add(child)
                stack.append(child)
    return found


def pid_alive(pid: int) -> bool:
    return not pid_gone(pid)


class Server:
    """``dsocr serve`` in a subprocess with the given options."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [*prefix, sys.executable, "-m", "supervisor.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--device", "cpu", *args]  # fmt: skip
        # a file, not a pipe: a full pipe would block a chatty server mid-test
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )  # fmt: skip
        self._engines: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
            return False

        if not wait_until(up, timeout):
            raise RuntimeError(f"server not up in {timeout}s")

    def engine_pids(self) -> list[int]:
        pids = sorted(descendants(self.pid, with_tracker=False))
        self._engines.update(pids)
        return pids

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-8000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        self.engine_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def cleanup(self) -> list[str]:
        """Kill whatever is left and remove leftover segments; returns the names of those."""
        self.stop(signal.SIGKILL, timeout=5)
        for pid in self._engines:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        leftovers = segments_of(self.pid)
        for name in leftovers:
            unlink_segment(name)
        self.log.close()
        return leftovers


@contextlib.contextmanager
def running_server(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> Iterator[Server]:
    """A ready server; ``prefix`` runs it under another command (e.g. ``unshare``)."""
    server = Server(*args, env=env, prefix=prefix)
    try:
        server.wait_ready()
        yield server
    finally:
        server.cleanup()


async def post_ocr(session: aiohttp.ClientSession, url: str, data: bytes, **fields: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename="page.png", content_type="image/png")
    async with session.post(f"{url}/ocr", data=form) as resp:
        return resp.status, await resp.json()


async def get_json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def post_json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.post(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()
