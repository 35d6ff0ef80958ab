"""The supervisor's handle on one engine process: spawn, request, kill, reap.

The engine is started by module name (``engine.main``) with the ``spawn`` method of
``multiprocess``, so the supervisor never imports torch. One duplex pipe carries framed messages
(``ipc.protocol``). A reader thread turns replies into the results of asyncio futures, so the
event loop never blocks on the pipe; sends run in a worker thread for the same reason.

A request that fails in the engine raises :class:`EngineFailure` (the engine lives on); a dead
engine fails every pending request with :class:`EngineDead`.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import multiprocess

from ipc import protocol as p

log = logging.getLogger("dsocr.supervisor.engine")

ENGINE_MODULE = "engine.main"


class EngineDead(RuntimeError):
    """The engine process exited (or was killed) before answering."""

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class EngineFailure(RuntimeError):
    """The engine answered a request with an error; ``type`` is a ``WireError`` type."""

    def __init__(self, error: p.WireError) -> None:
        super().__init__(error.message)
        self.type = error.type
        self.message = error.message


def _engine_entry(module: str, conn: Any, parent_pid: int, log_level: str, threads: int | None) -> None:
    # Runs in the child: the engine is imported here, by name, never in the supervisor.
    importlib.import_module(module).main(conn, parent_pid, log_level, threads)


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep ``spawn`` from re-running the parent's ``__main__`` in the engine.

    The spawn method re-imports the parent's main script in the child; the engine needs none of
    it, and a script without an ``if __name__ == "__main__"`` guard would start itself again.
    """
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class EngineHandle:
    """One engine process. Not reusable: after it dies, make a new handle (``respawn`` does)."""

    def __init__(self, log_level: str = "INFO", boot_timeout: float = 120.0, threads: int | None = None) -> None:
        self.log_level = log_level
        self.threads = threads
        self.boot_timeout = boot_timeout
        self._process: Any = None
        self._conn: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[p.Reply]] = {}
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dead: EngineDead | None = None
        self._stopping = False  # a death we asked for is logged as such, not as a fault
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._dead is None and self._process.is_alive()

    async def spawn(self) -> None:
        """Start the engine and wait until it answers (torch imported, ready for work)."""
        t0 = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        ctx = multiprocess.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=_engine_entry,
            args=(ENGINE_MODULE, child_conn, os.getpid(), self.log_level, self.threads),
            name="dsocr-engine",
            daemon=True,
        )
        with _main_module_hidden():
            self._process.start()
        child_conn.close()  # only the child holds its end: its exit gives us EOF
        self._conn = parent_conn
        self.started_at = time.monotonic()
        threading.Thread(target=self._read, name=f"engine-reader-{self.pid}", daemon=True).start()
        try:
            await self.request(p.Stats(id=0), timeout=self.boot_timeout)
        except (EngineDead, asyncio.TimeoutError) as exc:
            await self.kill()
            raise EngineDead(f"engine {self.pid} failed to start: {exc or 'timed out'}") from None
        log.info("engine %d spawned in %.2fs", self.pid, time.perf_counter() - t0)

    async def request(self, msg: p.Message, timeout: float | None = None) -> dict[str, Any]:
        """Send ``msg`` (its id is assigned here) and return the reply's result."""
        if self._dead is not None:
            raise self._dead
        if self._conn is None or self._loop is None:
            raise EngineDead("engine not started")
        msg.id = next(self._ids)
        future: asyncio.Future[p.Reply] = self._loop.create_future()
        self._pending[msg.id] = future
        try:
            frame = p.encode(msg)
            await asyncio.to_thread(self._send, frame)
            reply = await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            self._pending.pop(msg.id, None)
        if reply.error is not None:
            raise EngineFailure(reply.error)
        return reply.result or {}

    def _send(self, frame: bytes) -> None:
        try:
            with self._send_lock:
                self._conn.send_bytes(frame)
        except (OSError, ValueError) as exc:
            raise self._dead or EngineDead(f"engine {self.pid} pipe broken: {exc}") from None

    def _read(self) -> None:
        """Reader thread: replies to futures; on EOF, fail everything pending."""
        conn, loop = self._conn, self._loop
        try:
            while True:
                reply = p.decode(conn.recv_bytes())
                if isinstance(reply, p.Reply):
                    loop.call_soon_threadsafe(self._resolve, reply)
        except (EOFError, OSError, p.ProtocolError):
            pass
        conn.close()  # closed here, by its only reader, so no other thread reads a reused fd
        self._process.join(timeout=5)  # the exit code says why it died
        exitcode = self._process.exitcode
        verb = "exited" if self._stopping else "died"
        dead = EngineDead(f"engine {self.pid} {verb} ({describe_exit(exitcode)})", exitcode)
        try:
            loop.call_soon_threadsafe(self._fail_all, dead)
        except RuntimeError:
            pass  # the event loop is already closed

    def _resolve(self, reply: p.Reply) -> None:
        future = self._pending.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)

    def _fail_all(self, dead: EngineDead) -> None:
        if self._dead is None:
            self._dead = dead
            log.log(logging.INFO if self._stopping else logging.WARNING, "%s", dead)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(dead)
        self._pending.clear()

    async def kill(self) -> int | None:
        """SIGKILL the engine and reap it; returns its exit code. The segment is not touched."""
        if self._process is None:
            return None
        t0 = time.perf_counter()
        pid = self.pid
        self._stopping = True
        if self._process.is_alive():
            self._process.kill()
        await asyncio.to_thread(self._process.join, 10)
        self._fail_all(EngineDead(f"engine {pid} was stopped", self._process.exitcode))
        log.info("engine %d stopped in %.3fs", pid, time.perf_counter() - t0)
        return self._process.exitcode

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the engine to exit cleanly; kill it if it does not within ``timeout``."""
        self._stopping = True
        if self.alive:
            try:
                await self.request(p.Shutdown(id=0), timeout=timeout)
                await asyncio.to_thread(self._process.join, timeout)
            except (EngineDead, EngineFailure, asyncio.TimeoutError):
                pass
        await self.kill()
