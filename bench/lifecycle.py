"""Every model transition, timed on a real engine process from the supervisor's side:

    python bench/lifecycle.py [--model ppocr|synthetic] [--synthetic-gb N] [--device cpu|cuda|auto]
                              [--repeat K] [--no-zygote] [--json]

One round, each step timed with ``time.perf_counter`` around the awaits of ``EngineHandle``:

    cold_load          no engine, nothing loaded -> resident   (new engine + Load: checkpoint -> shm -> bind)
    infer              one rendered text image (after one untimed warm-up inference)
    offload            resident -> cached                       (live engine)
    restore            cached -> resident                       (live engine)
    stop               kill the engine; the segment stays
    respawn_restore    no engine, weights cached -> resident    (new engine + Restore)
    release            kill the engine and unlink the segment

New engines are forked from the zygote, started once before any timing as the service starts it at
boot (``--no-zygote``: spawned, each importing torch itself).

With ``--repeat K`` every figure is the median of K rounds. ``--json`` ends with one JSON line.
Checkpoint preparation (the synthetic file, the ppocr conversion) happens once, before any timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sample import text_png  # noqa: E402
from ipc import protocol as p  # noqa: E402
from ipc.errors import only_result  # noqa: E402
from ipc.weights import segment_name, unlink_segment  # noqa: E402
from supervisor.core.children import private_rss_bytes  # noqa: E402
from supervisor.core.engine_handle import EngineDead, EngineFailure, EngineHandle, Launcher, spawn_launcher  # noqa: E402
from supervisor.core.zygote import Zygote  # noqa: E402

STEPS = ["cold_load", "infer", "offload", "restore", "stop", "respawn_restore", "release"]
TEXT = "Invoice 2024-0517 total 44.96 EUR"
REQUEST_TIMEOUT = 600.0
T = TypeVar("T")


def prepare_weights(model: str, options: dict[str, Any]) -> str | None:
    """Make the adapter's checkpoint exist (write or convert it) in a child process.

    A child, so this process stays what a supervisor is (no torch) and the cost stays out of the
    timings. Returns None when ready, else the error's last line.
    """
    code = (
        "import sys, orjson; from engine.models import create_adapter; "
        "print(create_adapter(sys.argv[1], orjson.loads(sys.argv[2])).weight_files())"
    )
    done = subprocess.run([sys.executable, "-c", code, model, orjson.dumps(options).decode()], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ["failed"])[-1]


async def timed(awaitable: Awaitable[T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = await awaitable
    return time.perf_counter() - t0, result


class Round:
    """One pass through every transition; ``engine`` and ``segment`` are cleaned up by the caller."""

    def __init__(self, model: str, device: str, options: dict[str, Any], segment: str, launcher: Launcher) -> None:
        self.model, self.device, self.options, self.segment = model, device, options, segment
        self.launcher = launcher
        self.engine: EngineHandle | None = None
        self.times: dict[str, float] = {}
        self.info: dict[str, Any] = {}

    async def ask(self, msg: p.Message) -> dict[str, Any]:
        assert self.engine is not None
        return await self.engine.request(msg, timeout=REQUEST_TIMEOUT)

    async def _spawn_and(self, msg: p.Message) -> dict[str, Any]:
        # the handle is kept before spawn returns, so that a failure midway is still killed
        self.engine = EngineHandle(log_level="WARNING", launcher=self.launcher)
        await self.engine.spawn()
        if "engine_idle_private_rss_bytes" not in self.info:  # the first engine, before its load
            self.info["engine_idle_private_rss_bytes"] = private_rss_bytes(self.engine.pid or 0)
        return await self.ask(msg)

    async def run(self, image: bytes) -> None:
        m, seg, dev, opts = self.model, self.segment, self.device, self.options
        t = self.times
        t["cold_load"], loaded = await timed(self._spawn_and(p.Load(0, m, seg, dev, opts)))
        self.info.update(device=loaded["device"], weights_bytes=loaded["weights_bytes"],
                         engine_load_s=loaded["seconds"], engine_store_s=loaded["store_s"])  # fmt: skip
        t["first_infer"], _ = await timed(self.ask(p.Infer.one(0, m, {}, image)))  # warm-up
        t["infer"], reply = await timed(self.ask(p.Infer.one(0, m, {}, image)))
        result = only_result(reply)
        self.info["text"] = result.get("text", "")
        self.info["engine_private_rss_bytes"] = private_rss_bytes(self.engine.pid or 0)  # type: ignore[union-attr]
        t["offload"], _ = await timed(self.ask(p.Offload(0, m)))
        t["restore"], _ = await timed(self.ask(p.Restore(0, m, seg, dev, opts)))
        t["stop"], _ = await timed(self.engine.kill())  # type: ignore[union-attr]
        t["respawn_restore"], _ = await timed(self._spawn_and(p.Restore(0, m, seg, dev, opts)))
        t["release"], _ = await timed(self._release())

    async def _release(self) -> None:
        if self.engine is not None:
            await self.engine.kill()
        unlink_segment(self.segment)


async def bench(model: str, device: str, options: dict[str, Any], repeat: int, image: bytes,
                zygote: bool = True) -> dict[str, Any]:  # fmt: skip
    segment = segment_name(os.getpid(), model)
    rounds: list[Round] = []
    forks = Zygote(log_level="WARNING")
    launcher: Launcher = spawn_launcher
    try:
        if zygote:
            await forks.start()
            launcher = forks.launch
        for _ in range(repeat):
            rounds.append(Round(model, device, options, segment, launcher))
            await rounds[-1].run(image)
    finally:  # on any exit (an error, Ctrl-C, SIGTERM): no engine, no zygote and no segment left behind
        if rounds and rounds[-1].engine is not None:
            await rounds[-1].engine.kill()
        await forks.close()
        unlink_segment(segment)
    out: dict[str, Any] = {"model": model, "zygote": zygote and forks.fallback_spawns == 0,
                           **{k: rounds[0].info[k] for k in ("device", "weights_bytes")}}  # fmt: skip
    for step in [*STEPS, "first_infer"]:
        out[f"{step}_s"] = statistics.median(r.times[step] for r in rounds)
    out["spread_s"] = {step: [min(r.times[step] for r in rounds), max(r.times[step] for r in rounds)]
                       for step in STEPS}  # fmt: skip
    out.update(repeat=repeat, options=options, text=rounds[0].info["text"],
               engine_load_s=statistics.median(r.info["engine_load_s"] for r in rounds),
               engine_store_s=statistics.median(r.info["engine_store_s"] for r in rounds),
               engine_idle_private_rss_bytes=statistics.median(r.info["engine_idle_private_rss_bytes"] for r in rounds),
               engine_private_rss_bytes=statistics.median(r.info["engine_private_rss_bytes"] for r in rounds))  # fmt: skip
    return out


async def main_async(model: str, device: str, options: dict[str, Any], repeat: int, zygote: bool) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so the finally clauses still clean up
    task = asyncio.ensure_future(bench(model, device, options, repeat, text_png(TEXT), zygote))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await task


def print_table(r: dict[str, Any]) -> None:
    gb = r["weights_bytes"] / 1e9
    how = "forked from the zygote" if r["zygote"] else "spawned"
    print(f"model {r['model']} ({gb:.3f} GB of weights) on {r['device']}, engines {how}, "
          f"median of {r['repeat']} round(s)")  # fmt: skip
    print(f"  inference read: {r['text']!r}")
    print(f"  {'transition':<18}{'median s':>10}{'min s':>10}{'max s':>10}")
    for step in STEPS:
        low, high = r["spread_s"][step]
        print(f"  {step:<18}{r[f'{step}_s']:>10.4f}{low:>10.4f}{high:>10.4f}")
    print(
        f"  (first inference after load {r['first_infer_s']:.4f} s; the engine's own load "
        f"{r['engine_load_s']:.4f} s, of which checkpoint -> shared memory {r['engine_store_s']:.4f} s)"
    )
    print(
        f"  engine private memory: {r['engine_idle_private_rss_bytes'] / 2**20:.0f} MiB new, "
        f"{r['engine_private_rss_bytes'] / 2**20:.0f} MiB resident after a result"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["ppocr", "synthetic"], default="ppocr")
    ap.add_argument("--synthetic-gb", type=float, help="use the synthetic model with N GB of weights")
    ap.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-zygote", action="store_true", help="spawn every engine instead of forking it")
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    args = ap.parse_args()

    cache = Path(os.environ.get("DSOCR_CACHE_DIR", "~/.cache/dsocr")).expanduser()
    model = "synthetic" if args.synthetic_gb is not None else args.model
    options: dict[str, Any] = {}
    if model == "ppocr":
        error = prepare_weights("ppocr", options)
        if error is not None:
            print(f"ppocr is not available ({error}); measuring the synthetic model (0.5 GB) instead",
                  file=sys.stderr)  # fmt: skip
            model = "synthetic"
    if model == "synthetic":
        options = {"gb": args.synthetic_gb or 0.5, "dir": str(cache)}
        error = prepare_weights("synthetic", options)
        if error is not None:
            sys.exit(f"cannot write the synthetic weights into {cache}: {error}")

    try:
        result = asyncio.run(main_async(model, args.device, options, max(args.repeat, 1), not args.no_zygote))
    except (EngineFailure, EngineDead) as exc:
        sys.exit(f"the engine failed: {exc}")
    except (asyncio.CancelledError, KeyboardInterrupt):
        sys.exit("interrupted (engine stopped, segment removed)")
    print_table(result)
    if args.json:
        print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
