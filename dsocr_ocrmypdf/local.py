"""With no server to send pages to: one local ``dsocr serve`` for the OCRmyPDF run.

OCRmyPDF calls ``check_options`` once, in its main process, before it forks or spawns its workers
(``pluginspec.check_options``: "may modify global state before child worker processes are
forked"), and has no hook for the end of a run. So the main process starts the server there, on a
free 127.0.0.1 port, and points ``options.dsocr.url`` at it (options are what the workers get);
every worker then sends its pages to that one server, which loads the model once. It stops when
the process that started it exits (``atexit``; and the kernel's parent-death signal if that
process dies without running it), and at most one is started per process: a library caller
(``ocrmypdf.ocr()`` in paperless-ngx) that runs many files reuses it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

log = logging.getLogger(__name__)
READY_SECONDS = 120.0  # a fresh server's start (imports, the engine's zygote), not the model's load
PR_SET_PDEATHSIG = 1


class LocalServerFailed(RuntimeError):
    """The local server exited or did not answer in time; the message carries its last output."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalServer:
    """A ``dsocr serve`` child process on 127.0.0.1: ``start``ed, waited for, ``stop``ped."""

    def __init__(self, model: str | None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "supervisor.cli.main", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "WARNING", *(["--model", model] if model else [])]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip
        self._tail: list[bytes] = []
        threading.Thread(target=self._drain, daemon=True).start()  # a full pipe would block the server

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._tail = [*self._tail[-19:], line]

    def output(self) -> str:
        return b"".join(self._tail).decode("utf-8", "replace").strip()

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalServerFailed(f"the local dsocr server exited with {self.proc.returncode}: {self.output()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/health", timeout=2):
                return
            time.sleep(0.2)
        self.stop()
        raise LocalServerFailed(f"the local dsocr server did not answer in {timeout:.0f} s: {self.output()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the server stops its engines and frees their shared memory), SIGKILL if stuck."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        log.info("dsocr: stopped the local dsocr server (pid %d)", self.pid)


_started: LocalServer | None = None
_lock = threading.Lock()


def local_url(model: str | None) -> str:
    """The URL of this process's local server, started (and waited for) on first use (its device:
    ``dsocr serve``'s default, ``$DSOCR_DEVICE`` or the least used GPU, else the CPU)."""
    global _started
    with _lock:
        if _started is None or _started.proc.poll() is not None:
            server = LocalServer(model)
            log.info("dsocr: no server given; started a local dsocr server (pid %d) at %s", server.pid, server.url)
            server.wait_ready()
            atexit.register(server.stop)
            _started = server
        return _started.url
