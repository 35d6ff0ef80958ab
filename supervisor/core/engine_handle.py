"""The supervisor's handle on one engine process: spawn, request, kill, reap.

A *launcher* starts the process and returns it with its pipe (``spawn_launcher``: the ``spawn``
method of ``multiprocess``, by module name, so the supervisor never imports torch; the zygote's
launcher forks it from a process that has torch imported already). One duplex pipe carries framed
messages (``ipc.protocol``). A reader thread turns replies into the results of asyncio futures, so
the event loop never blocks on the pipe; sends run in a worker thread for the same reason. The
engine's stderr goes through a pipe of ours: its lines are copied to our stderr, and the last ones
are kept so that an engine that dies can say why.

A request that fails in the engine raises :class:`EngineFailure` (the engine lives on); a dead
engine fails every pending request with :class:`EngineDead`. ``spawn`` is cancellation-safe: a
spawn that is cancelled or fails kills the child it started before it re-raises.

One reaper per child: a waiter thread started with the handle is the only code that waits for the
process (``join``); ``kill`` signals and then awaits what the waiter saw, and the child leaves the
registry there and nowhere else (two threads reaping one child made it look alive: #20).
A launcher may return an :class:`InLoopConnection` and :class:`InLoopProcess` instead of a pipe and
a process: then replies, exits and sends run in the event loop with no thread (``tests/sim``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import inspect
import itertools
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import multiprocess

from ipc import protocol as p
from ipc.errors import EngineDead, EngineFailure
from supervisor.core.children import ChildRegistry

log = logging.getLogger("dsocr.supervisor.engine")

ENGINE_MODULE = "engine.main"
STDERR_TAIL_LINES = 20
KILL_WAIT_S = 10.0  # a SIGKILLed process is gone in milliseconds; past this something is wrong

__all__ = ["EngineDead", "EngineFailure", "EngineHandle", "Launched", "spawn_launcher"]


class EngineProcess(Protocol):
    """What the handle needs of a process (``multiprocess.Process`` has it; so does a forked one)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def exitcode(self) -> int | None: ...
    def is_alive(self) -> bool: ...
    def kill(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


@dataclass
class EngineSpec:
    parent_pid: int
    log_level: str
    threads: int | None


@dataclass
class Launched:
    process: EngineProcess
    conn: Any  # the supervisor's end of the duplex pipe (multiprocess Connection)
    stderr_fd: int | None  # read end of the engine's stderr, or None when it is not ours


# Quick (tens of ms); a launcher that may wait (the zygote's fork) returns an awaitable and does
# its waiting off the event loop.
Launcher = Callable[[EngineSpec], "Launched | Awaitable[Launched]"]


class InLoopConnection(Protocol):
    """A pipe end served in the event loop: frames and EOF come as calls, sends never block."""

    def attach(self, on_frame: Callable[[bytes], None], on_eof: Callable[[], None]) -> None: ...
    def send_bytes(self, frame: bytes) -> None: ...
    def close(self) -> None: ...


class InLoopProcess(Protocol):
    """A process whose exit is told in the event loop (``on_exit(callback)``), never waited for."""

    pid: int | None
    exitcode: int | None

    def on_exit(self, callback: Callable[[], None]) -> None: ...
    def is_alive(self) -> bool: ...
    def kill(self) -> None: ...


def _engine_entry(module: str, conn: Any, err: Any, spec: EngineSpec) -> None:
    # Runs in the child: stderr into our pipe, then the engine is imported here, by name.
    if err is not None:
        os.dup2(err.fileno(), 2)
        err.close()
    importlib.import_module(module).main(conn, spec.parent_pid, spec.log_level, spec.threads)


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


def spawn_launcher(spec: EngineSpec) -> Launched:
    """A fresh interpreter (``spawn``): imports torch itself, so it takes about a second."""
    ctx = multiprocess.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    err_read, err_write = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_engine_entry, args=(ENGINE_MODULE, child_conn, err_write, spec), name="dsocr-engine", daemon=True
    )
    with _main_module_hidden():
        process.start()
    child_conn.close()  # only the child holds its end: its exit gives us EOF
    err_write.close()
    stderr_fd = os.dup(err_read.fileno())
    err_read.close()
    return Launched(process, parent_conn, stderr_fd)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


PartialHandler = Callable[[int, str], None]


async def _adopt_even_if_cancelled(launching: Awaitable[Launched]) -> Launched:
    """Await a launcher; if we are cancelled first, the child it still starts is killed."""
    future = asyncio.ensure_future(launching)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_kill_late_child)
        raise


def _kill_late_child(future: asyncio.Future[Launched]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    launched = future.result()
    with contextlib.suppress(OSError, ValueError):
        launched.process.kill()
        launched.conn.close()
    if launched.stderr_fd is not None:
        with contextlib.suppress(OSError):
            os.close(launched.stderr_fd)


class EngineHandle:
    """One engine process. Not reusable: after it dies, make a new handle."""

    def __init__(
        self,
        log_level: str = "INFO",
        boot_timeout: float = 120.0,
        threads: int | None = None,
        launcher: Launcher | None = None,
        registry: ChildRegistry | None = None,
        model: str | None = None,
    ) -> None:
        self.log_level = log_level
        self.threads = threads
        self.boot_timeout = boot_timeout
        self.model = model
        self._launcher = launcher or spawn_launcher
        self._registry = registry
        self._process: EngineProcess | None = None
        self._conn: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[p.Reply]] = {}
        self._partials: dict[int, PartialHandler] = {}
        self._send_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dead: EngineDead | None = None
        self._stopping = False  # a death we asked for is logged as such, not as a fault
        self._stop_reason = ""  # why we asked (release, stop, shutdown...): the log line says it
        self._killed = False  # kill() ran to its end: a second call only answers
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_done = threading.Event()
        self._reaped: asyncio.Event | None = None  # set by the one reaper once the process is gone
        self._in_loop = False
        self._exited: threading.Event | None = None  # the waiter thread saw the process end
        self.spawn_seconds: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._dead is None and not self._gone()

    def _gone(self) -> bool:
        """Whether the process has ended, asking only the reaper (``is_alive`` would waitpid too)."""
        if self._in_loop or self._exited is None:
            return self._process is None or not self._process.is_alive()
        return self._exited.is_set()

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    async def spawn(self) -> None:
        """Start the engine and wait until it answers. Cancelled or failed: the child is killed."""
        t0 = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        spec = EngineSpec(os.getpid(), self.log_level, self.threads)
        # a plain launcher runs in the event loop's thread, with no await before its child is
        # adopted, so a cancellation cannot fall between the two (and PR_SET_PDEATHSIG watches the
        # thread that forked); an awaitable one hands over its child even when we are cancelled
        try:
            launched = self._launcher(spec)
            if inspect.isawaitable(launched):
                launched = await _adopt_even_if_cancelled(launched)
        except OSError as exc:  # no process, no pipe (EAGAIN, EMFILE...): the caller sees a dead engine
            raise EngineDead(f"cannot start an engine: {exc}") from None
        self._adopt(launched)
        try:
            await self.request(p.Stats(id=0), timeout=self.boot_timeout)
        except BaseException as exc:
            await self.kill("did not boot")
            if isinstance(exc, (EngineDead, asyncio.TimeoutError)):
                raise self._boot_failure(exc) from None
            raise
        self.spawn_seconds = time.perf_counter() - t0
        log.info("engine %d started in %.3fs", self.pid, self.spawn_seconds)

    def _boot_failure(self, exc: BaseException) -> EngineDead:
        self._stderr_done.wait(1.0)  # the last lines of a crashing engine say why
        tail = self.stderr_tail
        why = str(exc) or "timed out"
        if tail:
            why += "; its last output: " + " | ".join(tail[-5:])
        return EngineDead(f"engine {self.pid} failed to start: {why}")

    def _adopt(self, launched: Launched) -> None:
        self._process, self._conn = launched.process, launched.conn
        self._reaped = asyncio.Event()
        if self._registry is not None and launched.process.pid is not None:
            self._registry.add(launched.process.pid, "engine", self.model)
        if launched.stderr_fd is not None:
            threading.Thread(target=self._copy_stderr, args=(launched.stderr_fd,), daemon=True,
                             name=f"engine-stderr-{self.pid}").start()  # fmt: skip
        else:
            self._stderr_done.set()
        if hasattr(launched.conn, "attach") and hasattr(launched.process, "on_exit"):
            self._in_loop = True
            launched.conn.attach(self._frame, self._eof)
            launched.process.on_exit(self._on_reaped)
            return
        self._exited = threading.Event()
        threading.Thread(target=self._wait, name=f"engine-waiter-{self.pid}", daemon=True).start()
        threading.Thread(target=self._read, name=f"engine-reader-{self.pid}", daemon=True).start()

    def _wait(self) -> None:
        """The one reaper: waits for the process to end, then tells the event loop."""
        assert self._process is not None and self._loop is not None
        self._process.join()
        assert self._exited is not None
        self._exited.set()
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            self._loop.call_soon_threadsafe(self._on_reaped)

    def _on_reaped(self) -> None:
        if self._registry is not None:
            self._registry.remove(self.pid)
        if self._reaped is not None:
            self._reaped.set()

    def _copy_stderr(self, fd: int) -> None:
        """Engine stderr -> our stderr, line by line, keeping the last lines for error messages."""
        buffered = b""
        try:
            while chunk := os.read(fd, 65536):
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    self._emit_stderr(line)
                if len(buffered) > 65536:  # a line without end: do not grow without bound
                    self._emit_stderr(buffered)
                    buffered = b""
        except OSError:
            pass
        finally:
            if buffered:
                self._emit_stderr(buffered)
            os.close(fd)
            self._stderr_done.set()

    def _emit_stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._stderr_tail.append(text[:500])
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    async def request(
        self, msg: p.Message, timeout: float | None = None, on_partial: PartialHandler | None = None
    ) -> dict[str, Any]:
        """Send ``msg`` (its id is assigned here) and return the reply's result.

        ``on_partial(index, text)`` is called in the event loop for each partial the engine sends.
        """
        if self._dead is not None:
            raise self._dead
        if self._conn is None or self._loop is None:
            raise EngineDead("engine not started")
        msg.id = next(self._ids)
        future: asyncio.Future[p.Reply] = self._loop.create_future()
        self._pending[msg.id] = future
        if on_partial is not None:
            self._partials[msg.id] = on_partial
        try:
            frame = p.encode(msg)
            if self._in_loop:
                self._send(frame)
            else:
                await asyncio.to_thread(self._send, frame)
            reply = await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            self._pending.pop(msg.id, None)
            self._partials.pop(msg.id, None)
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
        """Reader thread: replies to futures, partials to their handlers; on EOF, fail everything."""
        conn, loop = self._conn, self._loop
        assert loop is not None and self._process is not None
        try:
            while True:
                msg = p.decode(conn.recv_bytes())
                if isinstance(msg, p.Reply):
                    loop.call_soon_threadsafe(self._resolve, msg)
                elif isinstance(msg, p.Partial):
                    loop.call_soon_threadsafe(self._partial, msg)
        except (EOFError, OSError, p.ProtocolError, RuntimeError):
            pass  # RuntimeError: the event loop closed under us
        conn.close()  # closed here, by its only reader, so no other thread reads a reused fd
        if self._exited is not None:
            self._exited.wait(5)  # the waiter's exit code says why it died
        self._stderr_done.wait(1.0)
        with contextlib.suppress(RuntimeError):  # the event loop is already closed
            loop.call_soon_threadsafe(self._fail_all, self._death())

    def _death(self) -> EngineDead:
        exitcode = None if self._process is None else self._process.exitcode
        if self._stopping:
            return EngineDead(f"engine {self.pid} stopped ({self._stop_reason or describe_exit(exitcode)})", exitcode)
        message = f"engine {self.pid} died ({describe_exit(exitcode)})"
        if self.stderr_tail:
            message += "; its last output: " + " | ".join(self.stderr_tail[-5:])
        return EngineDead(message, exitcode)

    def _frame(self, frame: bytes) -> None:
        """A frame from an in-loop connection."""
        try:
            msg = p.decode(frame)
        except p.ProtocolError as exc:
            self._fail_all(EngineDead(f"engine {self.pid} sent a bad frame: {exc}"))
            return
        if isinstance(msg, p.Reply):
            self._resolve(msg)
        elif isinstance(msg, p.Partial):
            self._partial(msg)

    def _eof(self) -> None:
        self._fail_all(self._death())

    def _resolve(self, reply: p.Reply) -> None:
        future = self._pending.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)

    def _partial(self, partial: p.Partial) -> None:
        handler = self._partials.get(partial.id)
        if handler is not None:
            try:
                handler(partial.index, partial.text)
            except Exception:  # a consumer's fault must not break the pipe reader
                log.exception("partial handler for request %d failed", partial.id)

    def _fail_all(self, dead: EngineDead) -> None:
        if self._dead is None:
            self._dead = dead
            if not self._stopping:  # a stop we asked for is logged once, by kill(), with its reason
                log.warning("%s", dead)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(dead)
        self._pending.clear()

    async def kill(self, reason: str = "stop") -> int | None:
        """SIGKILL the engine and reap it; returns its exit code. The segment is not touched.
        ``reason`` (``release``, ``stop, idle``...) is logged: a stop we asked for reads as one, not
        as a crash; an engine that had already died was logged when it did."""
        if self._process is None:
            return None
        if self._killed:
            return self._process.exitcode
        t0 = time.perf_counter()
        pid = self.pid
        died_before = not self._stopping and (self._dead is not None or self._gone())
        if not died_before:
            self._stopping = True
            self._stop_reason = self._stop_reason or reason
        if not self._gone():
            with contextlib.suppress(ProcessLookupError, OSError):
                self._process.kill()
        if self._reaped is not None:
            try:  # the waiter reaps it; we only wait for what it saw
                await asyncio.wait_for(self._reaped.wait(), KILL_WAIT_S)
            except asyncio.TimeoutError:
                log.error("engine %s did not exit %.0fs after SIGKILL; it stays in the registry", pid, KILL_WAIT_S)
        if died_before:  # its death is logged as one (by the pipe reader, or here if it has not yet)
            self._fail_all(self._death())
            log.debug("engine %d reaped", pid)
        else:
            self._fail_all(EngineDead(f"engine {pid} stopped ({self._stop_reason})", self._process.exitcode))
            log.info("engine %d stopped (%s) in %.3fs", pid, self._stop_reason, time.perf_counter() - t0)
        self._killed = self._gone()  # one that outlived SIGKILL is tried again next time
        return self._process.exitcode

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the engine to exit cleanly; kill it if it does not within ``timeout``."""
        self._stopping = True
        self._stop_reason = "shutdown"
        if self.alive:
            try:
                await self.request(p.Shutdown(id=0), timeout=timeout)
                await asyncio.wait_for(self._reaped.wait(), timeout)  # type: ignore[union-attr]
            except (EngineDead, EngineFailure, asyncio.TimeoutError):
                pass
        await self.kill()
