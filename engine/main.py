"""The engine process: reads framed messages from its pipe, runs them, answers on the same pipe.

Started by the supervisor (``supervisor.core.engine_handle``) with the ``spawn`` method. Two threads:

- the reader thread only moves bytes: it receives frames, answers ``stats`` at once from the last
  snapshot the main thread published (so status works while an inference runs, and the reader
  never reads the runtime's structures while the main thread changes them), and queues the rest;
- the main thread runs the queue one message at a time on ``EngineRuntime`` and publishes a new
  snapshot after each.

The process exits when its pipe closes (EOF), when it is told to shut down, or when its parent
dies (``PR_SET_PDEATHSIG`` plus a parent-pid watchdog): an orphan never keeps GPU memory.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from ipc import protocol as p

log = logging.getLogger("dsocr.engine")

_PARENT_POLL_S = 0.5
# partial text is coalesced: at most one message per item per interval, each of bounded size
PARTIAL_INTERVAL_S = 0.05
PARTIAL_MAX_CHARS = 16 * 1024
# OpenMP workers that wait by sleeping, not spinning: engines share the cores with each other and
# with whatever else runs. `bench/omp_wait.py --busy 1` (2-core machine, one other busy process):
# a 2-thread ppocr page 1.07 s passive against 2.67 s spinning, at a third of the CPU time; on an
# idle machine passive costs about 7% (0.655 s against 0.609 s). $OMP_WAIT_POLICY still wins.
OMP_WAIT_POLICY = "PASSIVE"


def _die_with_parent(parent_pid: int) -> None:
    try:  # Linux: the kernel sends SIGKILL when the parent thread exits
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL_S)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class EngineLoop:
    def __init__(self, conn: Any) -> None:
        from engine.runtime import EngineRuntime  # imports torch: after the watchdog is up

        self.conn = conn
        self.runtime = EngineRuntime()
        self.inbox: queue.Queue[p.Message | None] = queue.Queue()
        self._send_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._busy_since: float | None = None
        self.publish()

    def publish(self) -> None:
        """Replace the stats snapshot (one reference assignment: the reader sees old or new, whole)."""
        self._snapshot = self.runtime.stats()

    def stats(self) -> dict[str, Any]:
        snapshot = dict(self._snapshot)
        since = self._busy_since
        snapshot["busy_s"] = None if since is None else time.perf_counter() - since
        return snapshot

    def send(self, reply: p.Message) -> None:
        frame = p.encode(reply)
        with self._send_lock:
            self.conn.send_bytes(frame)

    def read(self) -> None:
        """Reader thread: frames in, stats answered here, the rest queued; None on EOF."""
        try:
            while True:
                frame = self.conn.recv_bytes()
                try:
                    msg = p.decode(frame)
                except p.ProtocolError as exc:
                    log.error("dropping malformed frame: %s", exc)
                    continue
                if isinstance(msg, p.Stats):
                    self.send(p.reply_ok(msg, **self.stats()))
                else:
                    self.inbox.put(msg)
        except (EOFError, OSError):
            pass
        finally:
            self.inbox.put(None)

    def run(self) -> int:
        threading.Thread(target=self.read, name="pipe-reader", daemon=True).start()
        while True:
            msg = self.inbox.get()
            if msg is None:
                log.info("pipe closed; engine %d exits", os.getpid())
                return 0
            self._busy_since = time.perf_counter()
            try:
                reply = self.handle(msg)
            finally:
                self._busy_since = None
                self.publish()
            try:
                self.send(reply)
            except (OSError, ValueError):
                return 0  # the supervisor is gone
            if isinstance(msg, p.Shutdown):
                return 0

    def handle(self, msg: p.Message) -> p.Reply:
        from engine.errors import to_wire_error

        rt = self.runtime
        t0 = time.perf_counter()
        try:
            if isinstance(msg, p.Load):
                result = rt.load(msg.model, msg.segment, msg.device, msg.options)
            elif isinstance(msg, p.Restore):
                result = rt.restore(msg.model, msg.segment, msg.device, msg.options)
            elif isinstance(msg, p.Offload):
                result = rt.offload(msg.model)
            elif isinstance(msg, p.Infer):
                result = self.infer(msg)
            elif isinstance(msg, p.Shutdown):
                rt.close()
                result = {}
            else:
                return p.reply_error(msg, p.WireError.PROTOCOL, f"unexpected message {msg.kind}")
        except Exception as exc:  # every failure becomes a reply; the engine keeps serving
            error = to_wire_error(exc)
            # the client's mistakes and the operator's (weights missing, out of memory) are one
            # line each; only a fault of ours (model_error) is worth a traceback
            expected = error.type != p.WireError.MODEL_ERROR
            level = (
                logging.INFO
                if error.type in (p.WireError.BAD_INPUT, p.WireError.UNSUPPORTED)
                else (logging.WARNING if expected else logging.ERROR)
            )
            log.log(level, "%s %d failed: %s: %s", msg.kind.value, msg.id, error.type, error.message,
                    exc_info=not expected)  # fmt: skip
            return p.Reply(id=msg.id, request=msg.kind, error=error)
        log.debug("%s %d done in %.3fs", msg.kind.value, msg.id, time.perf_counter() - t0)
        return p.reply_ok(msg, **result)

    def infer(self, msg: p.Infer) -> dict[str, Any]:
        from engine.errors import to_wire_error

        partials = _PartialSender(self, msg.id) if msg.stream else None
        answers = self.runtime.infer_batch(msg.model, msg.images, msg.options, partials)
        if partials is not None:
            partials.flush()
        results: list[dict[str, Any]] = []
        for answer in answers:
            if isinstance(answer, Exception):
                error = to_wire_error(answer)
                log.info("infer %d: one request failed: %s: %s", msg.id, error.type, error.message)
                results.append({"error": error.to_dict()})
            else:
                results.append(answer)
        return {"results": results}


class _PartialSender:
    """Coalesces streamed text per item: one Partial per item per interval, each bounded in size."""

    def __init__(self, loop: EngineLoop, request_id: int) -> None:
        self.loop, self.request_id = loop, request_id
        self.buffers: dict[int, list[str]] = {}
        self.last = 0.0

    def __call__(self, index: int, text: str) -> None:
        if text:
            self.buffers.setdefault(index, []).append(text)
        if time.perf_counter() - self.last >= PARTIAL_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        self.last = time.perf_counter()
        buffers, self.buffers = self.buffers, {}
        for index, parts in buffers.items():
            text = "".join(parts)
            for start in range(0, len(text), PARTIAL_MAX_CHARS):
                try:
                    self.loop.send(p.Partial(self.request_id, index, text[start : start + PARTIAL_MAX_CHARS]))
                except (OSError, ValueError):
                    return  # the supervisor is gone; the main loop finds out on its next send


def main(conn: Any, parent_pid: int, log_level: str = "INFO", threads: int | None = None) -> None:
    """Entry point in the spawned process; ``threads`` caps torch's CPU threads (before import)."""
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)  # before torch loads OpenMP
    if threads:
        # several engines (models, other services) share the cores: torch's default of
        # one thread per core oversubscribes them, and its OpenMP workers then spin for seconds
        os.environ["OMP_NUM_THREADS"] = str(threads)
    logging.basicConfig(
        level=log_level, stream=sys.stderr,
        format=f"%(asctime)s engine[{os.getpid()}] %(levelname)s %(message)s",
    )  # fmt: skip
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    loop = EngineLoop(conn)
    code = loop.run()
    loop.runtime.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: nothing left to flush, and CUDA teardown is slow
