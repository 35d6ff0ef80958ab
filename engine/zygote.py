"""The zygote: one long-lived process with torch and every adapter imported, that forks engines.

    python -m engine.zygote --fd N --parent PID [--log-level L]

Started by the supervisor (``supervisor.core.zygote``) with one end of a ``SOCK_SEQPACKET`` socket pair
as fd ``N``. A spawned engine spends about a second importing torch, transformers and the model
code; a child forked from here starts with all of it imported (copy-on-write) and answers in tens
of milliseconds. Android's zygote and Python's ``forkserver`` with preloaded modules are the
precedents.

What the zygote must never do, so that a forked child is a clean engine:

- touch CUDA (a forked CUDA context is unusable): it imports torch and runs no torch operation;
  ``debug`` reports that CUDA is still uninitialised (asked through ``engine.placement``);
- start a thread pool: OpenMP and torch's intra-op pool start on the first parallel operation (none
  runs here), and OpenBLAS (numpy's and OpenCV's copies) starts its pool at import, so it is limited
  to one thread here; the process stays single-threaded, and the child sets its own thread count
  before anything starts the pools.

Messages on the control socket are orjson objects, one per packet. From the supervisor: ``fork``
(``id``, ``log_level``, ``threads``), ``debug`` (``id``), ``exit``. From the zygote: ``ready``,
``forked`` (``id``, ``pid``, with three fds attached: the engine's end of its duplex pipe, the read
end of its stderr, a pidfd), ``debug`` (``id`` and the facts), ``exit`` (``pid``, ``code``: sent
after the zygote reaped a child, with multiprocessing's convention, minus the signal number when
killed), ``error`` (``id``, ``message``).

The zygote dies with the supervisor (``PR_SET_PDEATHSIG`` and EOF on the control socket), and every
engine dies with the zygote (the engine's own parent-death handling, with the zygote as its parent).
"""

from __future__ import annotations

import os

# OpenBLAS starts its thread pool when numpy (or OpenCV) loads it: one thread, so that the zygote
# holds no thread when it forks (a thread's locks would be copied held, the thread itself not)
os.environ["OPENBLAS_NUM_THREADS"] = "1"
# read by OpenMP when torch loads it, and inherited by every engine forked from here: see
# engine.main.OMP_WAIT_POLICY for why
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import ctypes
import importlib
import logging
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

import orjson

log = logging.getLogger("dsocr.zygote")

# what a new engine would otherwise import itself: torch, transformers, the runtime, every adapter
PRELOAD = (
    "torch",
    "transformers",
    # not onnxruntime: loading its library starts a thread, and a fork must hold none
    "multiprocess.connection",
    "engine.main",
    "engine.runtime",
    "engine.models.ppocr",
    "engine.models.synthetic",
    "engine.models.deepseek_ocr2",
)
MAX_PACKET = 64 * 1024


def _die_with_parent(parent_pid: int) -> None:
    try:  # Linux: the kernel sends SIGKILL when the thread that started us exits
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


class Zygote:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        self.forked_total = 0
        self.import_s: dict[str, float] = {}
        self.failed_imports: dict[str, str] = {}
        # SIGCHLD wakes the selector through this pipe; the handler itself does nothing
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def preload(self) -> None:
        for name in PRELOAD:
            t0 = time.perf_counter()
            try:
                importlib.import_module(name)
            except Exception as exc:  # an adapter whose deps are missing: its engines import it themselves
                self.failed_imports[name] = f"{type(exc).__name__}: {exc}"
                log.warning("zygote could not import %s: %s", name, exc)
            self.import_s[name] = round(time.perf_counter() - t0, 4)
        if thread_count() != 1:
            log.warning("zygote holds %d threads after its imports: forked engines may inherit held locks",
                        thread_count())  # fmt: skip

    def send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        data = orjson.dumps(msg)
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "ctrl")
        sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.send({"kind": "ready", "pid": os.getpid(), "import_s": self.import_s})
        while True:
            for key, _ in sel.select():
                if key.data == "wake":
                    self.drain_wakeups()
                    self.reap()
                    continue
                try:
                    data = self.sock.recv(MAX_PACKET)
                except InterruptedError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    log.info("zygote %d: control socket closed; exiting", os.getpid())
                    return
                msg = orjson.loads(data)
                kind = msg.get("kind")
                if kind == "exit":
                    return
                try:
                    if kind == "fork":
                        self.fork(msg)
                    elif kind == "debug":
                        self.send({"kind": "debug", "id": msg.get("id"), **self.debug()})
                    else:
                        self.send({"kind": "error", "id": msg.get("id"), "message": f"unknown kind {kind!r}"})
                except OSError as exc:  # fork failed (no memory, no pids): the supervisor spawns instead
                    log.error("zygote: %s failed: %s", kind, exc)
                    self.send({"kind": "error", "id": msg.get("id"), "message": str(exc)})
            self.reap()

    def drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def reap(self) -> None:
        """Reap every exited child and tell the supervisor how it ended."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"kind": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def debug(self) -> dict[str, Any]:
        # placement is the one CUDA module; asked only once it is imported (it imports torch)
        placement = sys.modules.get("engine.placement")
        return {
            "pid": os.getpid(),
            "cuda_initialized": bool(placement is not None and placement.cuda_initialized()),
            "threads": thread_count(),
            "children": sorted(self.children),
            "forked_total": self.forked_total,
            "import_s": self.import_s,
            "failed_imports": self.failed_imports,
        }

    def fork(self, msg: dict[str, Any]) -> None:
        ours, theirs = socket.socketpair()  # the engine's duplex pipe, as multiprocessing's Pipe makes it
        err_r, err_w = os.pipe()
        zygote_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            os.close(err_r)
            os.close(err_w)
            raise
        if pid == 0:  # the engine; never returns
            ours.close()
            os.close(err_r)
            self._become_engine(theirs, err_w, zygote_pid, msg.get("log_level") or "INFO", msg.get("threads"))
        theirs.close()
        os.close(err_w)
        self.children.add(pid)
        self.forked_total += 1
        pidfd = os.pidfd_open(pid)  # opened before we can reap it: the pid cannot be reused under it
        try:
            self.send({"kind": "forked", "id": msg.get("id"), "pid": pid}, [ours.fileno(), err_r, pidfd])
        finally:
            ours.close()
            os.close(err_r)
            os.close(pidfd)

    def _become_engine(self, sock: socket.socket, err_w: int, zygote_pid: int, log_level: str,
                       threads: int | None) -> None:  # fmt: skip
        code = 1
        try:
            os.setpgid(0, 0)  # its own process group, like a spawned engine: signals to ours miss it
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.sock.close()  # only the supervisor and the zygote hold the control socket
            os.dup2(err_w, 2)
            os.close(err_w)
            if threads:
                import torch

                # before any parallel region: OpenMP's pool starts with this size. The environment
                # variable engine.main sets is read only by a torch imported after it, not by ours
                torch.set_num_threads(int(threads))
            root = logging.getLogger()  # engine.main configures logging afresh, with its own pid
            for handler in root.handlers[:]:
                root.removeHandler(handler)
            from multiprocess.connection import Connection

            from engine.main import main

            main(Connection(sock.detach()), zygote_pid, log_level, threads)  # exits the process
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)


def main() -> None:
    ap = argparse.ArgumentParser(description="dsocr zygote (started by the supervisor)")
    ap.add_argument("--fd", type=int, required=True, help="the control socket (SOCK_SEQPACKET)")
    ap.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args()
    _die_with_parent(args.parent)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format=f"%(asctime)s zygote[{os.getpid()}] %(levelname)s %(message)s")  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    sock = socket.socket(fileno=args.fd)
    zygote = Zygote(sock)
    zygote.preload()
    try:
        zygote.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the supervisor is gone
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
