"""The supervisor's handle on the zygote (``engine.zygote``): engines forked in tens of milliseconds.

``Zygote.launch`` is a launcher for ``EngineHandle`` (see ``supervisor.core.engine_handle``): it asks the
zygote to fork an engine (one round trip on a ``SOCK_SEQPACKET`` socket) and returns the engine with
its pipe and stderr, received as file descriptors (``SCM_RIGHTS``). While the zygote is down or not
ready yet it falls back to ``spawn_launcher``: an engine is never refused for want of a zygote.

A zygote that dies is restarted in the background, after a delay that grows with consecutive deaths;
one that cannot boot ``MAX_BOOT_FAILURES`` times in a row is given up (engines are then spawned).
The zygote is started from the event loop's thread, which ``PR_SET_PDEATHSIG`` watches: it dies
with the supervisor, and its engines die with it. The supervisor never imports torch: the zygote
is started by module name, and this module speaks to it in orjson packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from multiprocess import resource_tracker
from multiprocess.connection import Connection

from supervisor.core.children import ChildRegistry, private_rss_bytes
from supervisor.core.engine_handle import EngineSpec, Launched, spawn_launcher

log = logging.getLogger("dsocr.zygote")

ZYGOTE_MODULE = "engine.zygote"
ROOT = Path(__file__).resolve().parents[2]  # holds the engine package the zygote imports
MAX_PACKET = 64 * 1024
FORK_TIMEOUT_S = 5.0  # a fork is tens of ms; an unanswered request means a stuck zygote
DEBUG_TIMEOUT_S = 5.0
REPORT_WAIT_S = 2.0  # after an engine exits, how long its exit code may take to come from the zygote
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 60.0  # a zygote that lived this long resets the count of consecutive deaths
MAX_BOOT_FAILURES = 3


class ZygoteUnavailable(RuntimeError):
    """The zygote did not fork (down, dead, stuck or out of resources): spawn instead."""


class ForkedEngine:
    """An engine forked by the zygote. Not our child: its exit is seen through a pidfd (which also
    makes ``kill`` safe from pid reuse), and its exit code comes from the zygote, which reaps it."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._code: int | None = None
        self._reported = threading.Event()
        self._exited = False
        weakref.finalize(self, os.close, pidfd)

    @property
    def exitcode(self) -> int | None:
        return self._code

    def report(self, code: int | None) -> None:
        """The zygote reaped it (``code``), or died and will never say (``None``)."""
        self._code = code
        self._reported.set()

    def _wait_exit(self, timeout: float | None) -> bool:
        if self._exited:
            return True
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)  # readable once the process has exited
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        self._exited = bool(poller.poll(ms))
        return self._exited

    def is_alive(self) -> bool:
        return not self._wait_exit(0)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def join(self, timeout: float | None = None) -> None:
        t0 = time.monotonic()
        if not self._wait_exit(timeout):
            return
        left = REPORT_WAIT_S if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
        self._reported.wait(min(left, REPORT_WAIT_S))


class ZygoteProcess:
    """One zygote process, its control socket and the thread that reads it."""

    def __init__(self, log_level: str, on_death: Any) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # fmt: skip
        cmd = [sys.executable, "-m", ZYGOTE_MODULE, "--fd", str(theirs.fileno()), "--parent", str(os.getpid()),
               "--log-level", log_level]  # fmt: skip
        try:
            self.popen = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # only the zygote holds its end: its death gives us EOF
        self.pid = self.popen.pid
        self.sock = ours
        self.started = time.monotonic()
        self.ready = threading.Event()
        self.settled = threading.Event()  # ready, or dead before it got there
        self.dead = False
        self.engines: dict[int, ForkedEngine] = {}  # alive as far as the zygote told us
        self._replies: queue.Queue[tuple[dict[str, Any], ForkedEngine | None, list[int]] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one request at a time on the socket
        self._on_death = on_death
        threading.Thread(target=self._read, name=f"zygote-reader-{self.pid}", daemon=True).start()

    @property
    def up(self) -> bool:
        return self.ready.is_set() and not self.dead

    def _read(self) -> None:
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(self.sock, MAX_PACKET, 3)
                if not data:
                    break
                msg = orjson.loads(data)
                kind = msg.get("kind")
                if kind == "ready":
                    self.ready.set()
                    self.settled.set()
                elif kind == "exit":
                    engine = self.engines.pop(msg["pid"], None)
                    if engine is not None:
                        engine.report(msg["code"])
                elif kind == "forked" and len(fds) == 3:
                    # made here, in order, so that an exit report that follows finds it
                    engine = ForkedEngine(msg["pid"], fds[2])
                    self.engines[engine.pid] = engine
                    self._replies.put((msg, engine, fds[:2]))
                else:
                    self._replies.put((msg, None, fds))
        except (OSError, ValueError):
            pass
        self.dead = True
        self.settled.set()
        self._replies.put(None)
        for engine in list(self.engines.values()):
            engine.report(None)  # killed with the zygote (their parent-death signal); nobody reaps for us
        with self._lock:
            self.sock.close()
        self._on_death(self)

    def ask(self, msg: dict[str, Any], timeout: float) -> tuple[dict[str, Any], ForkedEngine | None, list[int]]:
        """Send ``msg`` and return its answer; raises :class:`ZygoteUnavailable`."""
        with self._lock:
            if self.dead:
                raise ZygoteUnavailable(f"zygote {self.pid} is dead")
            msg["id"] = request_id = next(self._ids)
            try:
                self.sock.send(orjson.dumps(msg))
            except OSError as exc:
                raise ZygoteUnavailable(f"zygote {self.pid}: {exc}") from None
            deadline = time.monotonic() + timeout
            while True:
                try:
                    item = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise ZygoteUnavailable(f"zygote {self.pid} did not answer in {timeout:.1f}s") from None
                if item is None:
                    self._replies.put(None)  # for any later caller
                    raise ZygoteUnavailable(f"zygote {self.pid} died")
                reply, engine, fds = item
                if reply.get("id") == request_id:
                    if reply.get("kind") == "error":
                        _close_all(fds)
                        raise ZygoteUnavailable(f"zygote {self.pid}: {reply.get('message')}")
                    return reply, engine, fds
                _discard(engine, fds)  # the answer to a request that timed out

    def fork(self, spec: EngineSpec, timeout: float) -> Launched:
        reply, engine, fds = self.ask({"kind": "fork", "log_level": spec.log_level, "threads": spec.threads}, timeout)
        if engine is None or len(fds) != 2:
            _discard(engine, fds)
            raise ZygoteUnavailable(f"zygote {self.pid}: unexpected answer {reply.get('kind')!r}")
        conn_fd, err_fd = fds
        return Launched(engine, Connection(conn_fd), err_fd)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _discard(engine: ForkedEngine | None, fds: list[int]) -> None:
    if engine is not None:
        engine.kill()
    _close_all(fds)


class Zygote:
    """Starts, watches and restarts the zygote; ``launch`` is the engines' launcher."""

    def __init__(self, log_level: str = "INFO", boot_timeout: float = 120.0,
                 fork_timeout: float = FORK_TIMEOUT_S) -> None:  # fmt: skip
        self.log_level = log_level
        self.boot_timeout = boot_timeout
        self.fork_timeout = fork_timeout
        self._proc: ZygoteProcess | None = None
        self._registry: ChildRegistry | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart: asyncio.Task[None] | None = None
        self._reapers: set[asyncio.Task[None]] = set()
        self._closing = False
        self._deaths = 0  # consecutive
        self._boot_failures = 0  # consecutive
        self.restarts = 0
        self.forks = 0
        self.fallback_spawns = 0

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return None if proc is None or proc.dead else proc.pid

    @property
    def up(self) -> bool:
        return self._proc is not None and self._proc.up

    async def start(self, registry: ChildRegistry | None = None, wait: bool = True) -> None:
        """Start the zygote; with ``wait``, until it has imported everything (seconds)."""
        self.start_nowait(registry)
        if wait:
            await self.wait_ready()

    def start_nowait(self, registry: ChildRegistry | None = None) -> None:
        """Start the zygote and return at once (call it in the event loop's thread); engines are
        spawned until it is ready."""
        self._loop = asyncio.get_running_loop()
        self._registry = registry
        self._closing = False
        self._start_process()

    def _start_process(self) -> None:
        # in the event loop's thread: PR_SET_PDEATHSIG fires when the thread that started it exits
        proc = ZygoteProcess(self.log_level, self._died_threadsafe)
        self._proc = proc
        if self._registry is not None:
            self._registry.add(proc.pid, "zygote")
        log.info("zygote %d started", proc.pid)

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the zygote can fork; False if it died or did not get ready within ``timeout``."""
        proc = self._proc
        if proc is None:
            return False
        t0 = time.perf_counter()
        await asyncio.to_thread(proc.settled.wait, self.boot_timeout if timeout is None else timeout)
        if proc.up:
            log.info("zygote %d ready in %.3fs", proc.pid, time.perf_counter() - t0)
        return proc.up

    async def launch(self, spec: EngineSpec) -> Launched:
        """A launcher: fork from the zygote when it is up, else a plain spawn.

        The fork's round trip runs in a worker thread: a stuck zygote (stopped, or busy with a
        ``debug`` request) costs the caller up to ``fork_timeout``, never the event loop (#20).
        The zygote, not that thread, is the engine's parent, so ``PR_SET_PDEATHSIG`` is unaffected;
        the spawn fallback forks from us and so runs in the event loop's thread.
        """
        proc = self._proc
        if proc is not None and proc.up:
            try:
                launched = await asyncio.to_thread(proc.fork, spec, self.fork_timeout)
            except ZygoteUnavailable as exc:
                log.warning("%s; spawning the engine instead", exc)
                proc.kill()  # a zygote that does not fork is replaced (see _died)
            else:
                self.forks += 1
                return launched
        self.fallback_spawns += 1
        launched = spawn_launcher(spec)
        self._register_resource_tracker()
        return launched

    def _register_resource_tracker(self) -> None:
        """``spawn`` starts multiprocess's resource tracker once: a child of ours like any other."""
        pid = getattr(resource_tracker._resource_tracker, "_pid", None)
        if self._registry is not None and pid is not None and pid not in self._registry:
            self._registry.add(pid, "resource-tracker")

    launcher = launch

    def _died_threadsafe(self, proc: ZygoteProcess) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nothing to restart
                loop.call_soon_threadsafe(self._died, proc)

    def _died(self, proc: ZygoteProcess) -> None:
        if self._closing:
            return  # close() reaps it
        reaper = asyncio.ensure_future(self._reap(proc))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        if proc is not self._proc:
            return
        lived = time.monotonic() - proc.started
        self._deaths = 1 if proc.ready.is_set() and lived > STABLE_S else self._deaths + 1
        self._boot_failures = 0 if proc.ready.is_set() else self._boot_failures + 1
        if self._boot_failures >= MAX_BOOT_FAILURES:
            log.error("zygote failed to start %d times in a row; engines will be spawned", self._boot_failures)
            return
        delay = RESTART_DELAYS_S[min(self._deaths, len(RESTART_DELAYS_S)) - 1]
        log.warning("zygote %d died after %.1fs; restarting in %.1fs (engines are spawned meanwhile)",
                    proc.pid, lived, delay)  # fmt: skip
        self._restart = asyncio.ensure_future(self._restart_after(delay))

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._closing:
            return
        self._start_process()
        self.restarts += 1
        proc = self._proc
        if not await self.wait_ready() and proc is not None and not proc.dead:
            log.error("zygote %d did not get ready in %.0fs; killing it", proc.pid, self.boot_timeout)
            proc.kill()

    async def _reap(self, proc: ZygoteProcess) -> None:
        code = await asyncio.to_thread(proc.popen.wait)
        if self._registry is not None:
            self._registry.remove(proc.pid)
        log.log(logging.INFO if self._closing else logging.WARNING, "zygote %d exited with %s", proc.pid, code)

    def status(self) -> dict[str, Any]:
        """For ``/gpu/status``: no round trip to the zygote."""
        pid = self.pid
        return {"pid": pid, "up": self.up, "restarts": self.restarts, "forks": self.forks,
                "fallback_spawns": self.fallback_spawns, "private_rss_bytes": private_rss_bytes(pid) if pid else 0}  # fmt: skip

    async def debug(self) -> dict[str, Any]:
        """What the zygote says of itself (``cuda_initialized``, ``threads``, ``children``...), plus our counts."""
        proc = self._proc
        facts = self.status()
        if proc is not None and proc.up:
            try:
                reply, _, fds = await asyncio.to_thread(proc.ask, {"kind": "debug"}, DEBUG_TIMEOUT_S)
            except ZygoteUnavailable as exc:
                facts["error"] = str(exc)
            else:
                _close_all(fds)
                facts.update({k: v for k, v in reply.items() if k not in ("kind", "id")})
        return facts

    async def close(self) -> None:
        """Kill the zygote (and with it any engine it forked that is still alive)."""
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(BaseException):
                await self._restart
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            await asyncio.to_thread(proc.popen.wait)
            if self._registry is not None:
                self._registry.remove(proc.pid)
        for reaper in list(self._reapers):
            with contextlib.suppress(BaseException):
                await reaper
