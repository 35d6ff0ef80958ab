"""dsocr against the upstream approach, the same sequence through both, alternating, in one run.

    python bench/compare.py [--model ppocr | --synthetic-gb N] [--device cpu|cuda:0] [--rounds K] [--json]
                             [--no-zygote]

Sequence: cold start -> request -> offload -> request -> zero-memory step -> request.
The zero-memory step is the upstream release (drop the model, empty the cache, reload from disk
on the next request) against dsocr's engine stop (kill the engine; weights stay in shared memory).
dsocr runs through ``ModelLifecycle``, the supervisor's own state machine with real engine
processes, forked from the zygote as the service does (``--no-zygote``: spawned, each importing
torch itself); the zygote is started once, before any timing, as the service starts it at boot
(its boot time is reported as ``zygote_ready_s``). ``engine_start_s`` is a new engine answering its
first message, forked from the zygote (``engine_start_spawn_s``: spawned). The baseline runs in its
own process (``bench/baseline.py``). Figures are medians over the rounds; ``--json`` ends with one
JSON line.
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
from supervisor.core.children import private_rss_bytes
from supervisor.core.engine_handle import EngineHandle, Launcher, spawn_launcher
from supervisor.core.lifecycle import ModelLifecycle
from supervisor.core.settings import Settings
from supervisor.core.zygote import Zygote


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


async def run_dsocr(model: str, options: dict[str, Any], device: str, image: bytes,
                    launcher: Launcher) -> dict[str, float]:  # fmt: skip
    settings = Settings(models=[model], device=device, idle_timeout=0, model_options={model: options})
    lc = ModelLifecycle(model, settings, device, launcher=launcher)
    lc.start()
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
        # zero memory: stop the engine; the next request comes at once and needs a new engine
        t0 = time.perf_counter()
        await lc.stop_engine()
        out["zero_memory_s"] = time.perf_counter() - t0
        await lc.infer(image, opts)
        out["zero_memory_to_result_s"] = time.perf_counter() - t0
        if lc.engine is not None and lc.engine.pid is not None:
            out["engine_private_rss_bytes"] = private_rss_bytes(lc.engine.pid)  # resident, after a result
    finally:
        await lc.release("bench done")
        await lc.close()
    return out


async def engine_start(launcher: Launcher) -> float:
    """A new engine, from the launch to its first answer (nothing loaded)."""
    handle = EngineHandle(log_level="WARNING", threads=1, launcher=launcher)
    try:
        await handle.spawn()
        assert handle.spawn_seconds is not None
        return handle.spawn_seconds
    finally:
        await handle.kill()


async def run_rounds(args: argparse.Namespace, model: str, options: dict[str, Any], image: bytes,
                     image_path: Path) -> tuple[list[dict[str, float]], list[dict[str, float]], dict[str, Any]]:  # fmt: skip
    zygote = Zygote(log_level="WARNING")
    extra: dict[str, Any] = {}
    launcher: Launcher = spawn_launcher
    if not args.no_zygote:
        t0 = time.perf_counter()
        await zygote.start()
        extra["zygote_ready_s"] = time.perf_counter() - t0
        launcher = zygote.launch
    base_runs, ds_runs = [], []
    try:
        for _ in range(args.rounds):  # alternating, so drift on a noisy machine hits both
            base_runs.append(await asyncio.to_thread(run_baseline, model, options, args.device, image_path))
            run = await run_dsocr(model, options, args.device, image, launcher)
            run["engine_start_spawn_s"] = await engine_start(spawn_launcher)
            if not args.no_zygote:
                run["engine_start_s"] = await engine_start(zygote.launch)
            ds_runs.append(run)
        if not args.no_zygote:
            facts = await zygote.debug()
            extra.update(zygote_private_rss_bytes=facts["private_rss_bytes"],
                         zygote_cuda_initialized=facts["cuda_initialized"], zygote_forks=facts["forks"],
                         fallback_spawns=facts["fallback_spawns"])  # fmt: skip
    finally:
        await zygote.close()
    return base_runs, ds_runs, extra


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs if key in run) for key in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ppocr")
    ap.add_argument("--synthetic-gb", type=float, default=None, help="use N GB of random weights instead")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-zygote", action="store_true", help="spawn every engine instead of forking it")
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
        base_runs, ds_runs, extra = asyncio.run(run_rounds(args, model, options, image, Path(fh.name)))
    base, ds = median_of(base_runs), median_of(ds_runs)

    rows = ["cold_start_to_result_s", "request_s", "offload_s", "request_after_offload_s", "zero_memory_s",
            "zero_memory_to_result_s"]  # fmt: skip
    print(f"model {model} {options or ''} on {args.device}, median of {args.rounds} rounds")
    print(f"{'step':34} {'upstream':>10} {'dsocr':>10} {'ratio':>8}")
    for key in rows:
        ratio = base[key] / ds[key] if ds[key] > 0 else float("inf")
        print(f"{key:34} {base[key]:10.4f} {ds[key]:10.4f} {ratio:7.1f}x")
    for key in ("restore_live_s", "engine_start_s", "engine_start_spawn_s"):
        if key in ds:
            print(f"{key:34} {'':>10} {ds[key]:10.4f}")
    if "engine_start_s" in ds:
        print(f"engine start: forked from the zygote {ds['engine_start_s']:.4f} s, "
              f"spawned {ds['engine_start_spawn_s']:.4f} s; zygote ready in {extra['zygote_ready_s']:.2f} s "
              f"at boot, holding {extra['zygote_private_rss_bytes'] / 2**20:.0f} MiB private")  # fmt: skip
    no_wait = base["zero_memory_to_result_s"] / ds["zero_memory_to_result_s"]
    summary = {
        "model": model,
        "options": options,
        "device": args.device,
        "rounds": args.rounds,
        "baseline": base,
        "dsocr": ds,
        # no standby engine any more: every zero-memory request takes a new engine, so the two are one
        "zero_memory_to_result_ratio": no_wait,
        "zero_memory_to_result_ratio_no_wait": no_wait,
        "engine_start_s": ds.get("engine_start_s", ds["engine_start_spawn_s"]),
        "engine_start_spawn_s": ds["engine_start_spawn_s"],
        "zygote": not args.no_zygote,
        **extra,
    }
    print(f"zero memory -> result (a request right after the stop): dsocr {no_wait:.1f}x faster")
    if args.json:
        print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
