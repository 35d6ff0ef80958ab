"""dsocr against the upstream approach, the same sequence through both, alternating, in one run.

    python bench/compare.py [--model ppocr | --synthetic-gb N] [--device cpu|cuda:0] [--rounds K] [--json]

Sequence: cold start -> request -> offload -> request -> zero-memory step -> request.
The zero-memory step is the upstream release (drop the model, empty the cache, reload from disk
on the next request) against dsocr's engine stop (kill the engine; weights stay in shared memory).
dsocr runs through ``ModelLifecycle``, the supervisor's own state machine with real engine
processes; the baseline runs in its own process (``bench/baseline.py``). Figures are medians
over the rounds; ``--json`` ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sample import text_png
from supervisor.lifecycle import ModelLifecycle
from supervisor.settings import Settings


class BaselineProcess:
    """``bench/baseline.py`` in a subprocess, one command at a time."""

    def __init__(self, model: str, options: dict[str, Any], device: str) -> None:
        script = Path(__file__).with_name("baseline.py")
        env = {**os.environ, "PYTHONPATH": str(script.parent.parent)}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), model, orjson.dumps(options).decode(), device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self._read()  # ready: torch and the model code imported

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"baseline worker exited with {self.proc.wait()}")
        return orjson.loads(line)

    def call(self, command: str) -> float:
        t0 = time.perf_counter()
        self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        self._read()
        return time.perf_counter() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            self.proc.wait(30)


def run_baseline(model: str, options: dict[str, Any], device: str, image_path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    base = BaselineProcess(model, options, device)
    try:
        base.call(f"infer {image_path}")
        out = {"cold_start_to_result_s": time.perf_counter() - t0}
        out["request_s"] = base.call(f"infer {image_path}")
        out["offload_s"] = base.call("offload")
        out["request_after_offload_s"] = base.call(f"infer {image_path}")
        out["zero_memory_s"] = base.call("release")
        out["zero_memory_to_result_s"] = out["zero_memory_s"] + base.call(f"infer {image_path}")
    finally:
        base.close()
    return out


async def run_dsocr(model: str, options: dict[str, Any], device: str, image: bytes, standby: bool) -> dict[str, float]:
    settings = Settings(models=[model], device=device, idle_timeout=0, standby=standby,
                        model_options={model: options})  # fmt: skip
    lc = ModelLifecycle(model, settings, device)
    opts = {"prompt_type": "ocr"}
    try:
        t0 = time.perf_counter()
        await lc.infer(image, opts)
        out = {"cold_start_to_result_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        await lc.infer(image, opts)
        out["request_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await lc.offload()
        out["offload_s"] = time.perf_counter() - t0
        restores = lc.transition_seconds["restore"]
        t0 = time.perf_counter()
        await lc.infer(image, opts)
        out["request_after_offload_s"] = time.perf_counter() - t0
        out["restore_live_s"] = lc.transition_seconds["restore"] - restores
        # zero memory: stop the engine; the next request comes at once (no time for a standby)
        t0 = time.perf_counter()
        await lc.stop_engine()
        out["zero_memory_s"] = time.perf_counter() - t0
        await lc.infer(image, opts)
        out["zero_memory_to_result_s"] = time.perf_counter() - t0
        if standby:
            # the usual case: the engine was stopped by its idle timer long before the request
            t0 = time.perf_counter()
            await lc.stop_engine()
            stop_s = time.perf_counter() - t0
            await _wait_standby(lc)
            restores = lc.transition_seconds["restore"]
            t0 = time.perf_counter()
            await lc.infer(image, opts)
            out["zero_memory_to_result_standby_s"] = stop_s + time.perf_counter() - t0
            out["restore_after_stop_standby_s"] = lc.transition_seconds["restore"] - restores
    finally:
        await lc.release("bench done")
    return out


async def _wait_standby(lc: ModelLifecycle, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while lc.standby_pid is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ppocr")
    ap.add_argument("--synthetic-gb", type=float, default=None, help="use N GB of random weights instead")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-standby", action="store_true", help="measure dsocr without the standby engine")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cache = os.environ.setdefault("DSOCR_CACHE_DIR", str(Path("~/.cache/dsocr").expanduser()))
    model, options = args.model, {}
    if args.synthetic_gb is not None:
        model, options = "synthetic", {"gb": args.synthetic_gb, "dir": cache}
    from engine.models import create_adapter

    create_adapter(model, options).weight_files()  # convert or write the weights before timing

    image = text_png("Invoice 2041 total 385.20")
    with tempfile.NamedTemporaryFile(suffix=".png") as fh:
        fh.write(image)
        fh.flush()
        base_runs, ds_runs = [], []
        for _ in range(args.rounds):  # alternating, so drift on a noisy machine hits both
            base_runs.append(run_baseline(model, options, args.device, Path(fh.name)))
            ds_runs.append(asyncio.run(run_dsocr(model, options, args.device, image, not args.no_standby)))
    base, ds = median_of(base_runs), median_of(ds_runs)

    rows = ["cold_start_to_result_s", "request_s", "offload_s", "request_after_offload_s", "zero_memory_s",
            "zero_memory_to_result_s"]  # fmt: skip
    print(f"model {model} {options or ''} on {args.device}, median of {args.rounds} rounds")
    print(f"{'step':34} {'upstream':>10} {'dsocr':>10} {'ratio':>8}")
    for key in rows:
        ratio = base[key] / ds[key] if ds[key] > 0 else float("inf")
        print(f"{key:34} {base[key]:10.4f} {ds[key]:10.4f} {ratio:7.1f}x")
    for key in ("zero_memory_to_result_standby_s", "restore_live_s", "restore_after_stop_standby_s"):
        if key in ds:
            print(f"{key:34} {'':>10} {ds[key]:10.4f}")
    best_zero = ds.get("zero_memory_to_result_standby_s", ds["zero_memory_to_result_s"])
    summary = {
        "model": model,
        "options": options,
        "device": args.device,
        "rounds": args.rounds,
        "baseline": base,
        "dsocr": ds,
        "zero_memory_to_result_ratio": base["zero_memory_to_result_s"] / best_zero,
        "zero_memory_to_result_ratio_no_wait": base["zero_memory_to_result_s"] / ds["zero_memory_to_result_s"],
    }
    print(f"zero memory -> result: dsocr {summary['zero_memory_to_result_ratio']:.1f}x faster "
          f"({summary['zero_memory_to_result_ratio_no_wait']:.1f}x when the request comes right after the stop)")  # fmt: skip
    if args.json:
        print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
