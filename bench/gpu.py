"""The CUDA path, measured on any CUDA host in one command:

    python bench/gpu.py [--gb 4] [--device cuda:0] [--repeat 3] [--json]

For a synthetic model of N GB (random float32 weights written once to DSOCR_CACHE_DIR):
- the PCIe (or NVLink-C2C) bandwidth, measured here with a pinned ``torch`` copy of the same size;
- restore (cached -> resident) in a live engine from the pinned segment (``cudaHostRegister``),
  and the same through a staged copy (two small pinned buffers), each in its own engine;
- offload time (drops the device buffer; must not grow with size);
- the GPU memory NVML sees for the engine process in each state (the CUDA context included),
  and after the engine is stopped (must be 0 for our processes).
Prints one table and, with ``--json``, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipc import protocol as p
from ipc.weights import segment_name, unlink_segment
from supervisor.core import gpus
from supervisor.core.engine_handle import EngineHandle


def nvml_bytes(pid: int | None) -> int:
    return gpus.process_gpu_bytes(pid)


def measure_bandwidth(nbytes: int, device: str, repeat: int) -> float:
    """Host-to-device GB/s of a pinned ``torch`` copy of ``nbytes`` (what a restore can reach)."""
    import torch

    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dev.copy_(host, non_blocking=True)  # warm-up
    torch.cuda.synchronize(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    del host, dev
    torch.cuda.empty_cache()
    return nbytes / statistics.median(times) / 1e9


async def engine_cycle(segment: str, device: str, options: dict[str, Any], repeat: int,
                       load: bool) -> dict[str, Any]:  # fmt: skip
    """Load (or restore) in a fresh engine, then offload/restore ``repeat`` times in that engine."""
    engine = EngineHandle(log_level="WARNING")
    await engine.spawn()
    out: dict[str, Any] = {"nvml": {"spawned": nvml_bytes(engine.pid)}}
    try:
        first = p.Load if load else p.Restore
        t0 = time.perf_counter()
        reply = await engine.request(first(0, "synthetic", segment, device, options))
        out["first_s"] = time.perf_counter() - t0
        out["pinned"] = reply.get("pinned")
        out["weights_bytes"] = reply.get("weights_bytes")
        out["nvml"]["resident"] = nvml_bytes(engine.pid)
        out["torch_resident"] = reply.get("device_memory")
        offloads, restores = [], []
        for _ in range(repeat):
            reply = await engine.request(p.Offload(0, "synthetic"))
            offloads.append(reply["seconds"])
            out["nvml"]["cached_engine_alive"] = nvml_bytes(engine.pid)
            out["torch_cached"] = reply.get("device_memory")
            reply = await engine.request(p.Restore(0, "synthetic", segment, device, options))
            restores.append(reply["seconds"])
        out["offload_s"] = statistics.median(offloads)
        out["restore_s"] = statistics.median(restores)
    finally:
        pid = engine.pid
        t0 = time.perf_counter()
        await engine.kill()
        out["stop_s"] = time.perf_counter() - t0
        await asyncio.sleep(0.5)  # NVML's per-process list lags the exit a little
        out["nvml"]["stopped"] = nvml_bytes(pid)
    return out


async def run(gb: float, device: str, repeat: int) -> dict[str, Any]:
    cache = os.environ.setdefault("DSOCR_CACHE_DIR", str(Path("~/.cache/dsocr").expanduser()))
    options = {"gb": gb, "dir": cache}
    from engine.models.synthetic import SyntheticAdapter

    SyntheticAdapter(options).weight_files()  # written once, before any timing
    segment = segment_name(os.getpid(), "synthetic")
    try:
        pinned = await engine_cycle(segment, device, options, repeat, load=True)
        # fresh engines, as after a stop: the first restore pays the registration (or not)
        fresh = await engine_cycle(segment, device, options, 1, load=False)
        staged = await engine_cycle(segment, device, {**options, "pin": False}, repeat, load=False)
    finally:
        unlink_segment(segment)
    nbytes = pinned["weights_bytes"]
    bandwidth = measure_bandwidth(nbytes, device, repeat)
    return {
        "gb": gb,
        "device": device,
        "gpu": next((g.name for g in gpus.list_gpus()), None),
        "weights_bytes": nbytes,
        "pcie_pinned_copy_gbps": bandwidth,
        "restore_pinned_s": pinned["restore_s"],
        "restore_pinned_gbps": nbytes / pinned["restore_s"] / 1e9,
        "first_load_s": pinned["first_s"],
        "restore_fresh_engine_pinned_s": fresh["first_s"],
        "restore_fresh_engine_staged_s": staged["first_s"],
        "restore_staged_s": staged["restore_s"],
        "restore_staged_gbps": nbytes / staged["restore_s"] / 1e9,
        "segment_pinned": pinned["pinned"],
        "offload_s": pinned["offload_s"],
        "stop_s": pinned["stop_s"],
        "nvml_engine_bytes": pinned["nvml"],
        "torch_resident": pinned["torch_resident"],
        "torch_cached": pinned["torch_cached"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        gpus.list_gpus()
    except gpus.NoGpu as exc:
        sys.exit(f"bench/gpu.py needs a CUDA host: {exc}")
    r = asyncio.run(run(args.gb, args.device, args.repeat))
    mib = 2**20
    print(f"{r['gb']:g} GB synthetic model on {r['device']} ({r['gpu']})")
    print(f"  pinned torch copy (bandwidth)      {r['pcie_pinned_copy_gbps']:8.1f} GB/s")
    print(f"  restore, pinned segment            {r['restore_pinned_s']:8.3f} s  {r['restore_pinned_gbps']:6.1f} GB/s"
          f"  (segment registered: {r['segment_pinned']})")  # fmt: skip
    print(f"  restore, staged copy               {r['restore_staged_s']:8.3f} s  {r['restore_staged_gbps']:6.1f} GB/s")
    print(
        f"  restore in a fresh engine, pinned  {r['restore_fresh_engine_pinned_s']:8.3f} s  (cudaHostRegister included)"
    )
    print(f"  restore in a fresh engine, staged  {r['restore_fresh_engine_staged_s']:8.3f} s")
    print(f"  first load (disk -> shm -> device) {r['first_load_s']:8.3f} s")
    print(f"  offload                            {r['offload_s']:8.4f} s")
    print(f"  stop (kill engine)                 {r['stop_s']:8.4f} s")
    for state, value in r["nvml_engine_bytes"].items():
        print(f"  NVML, engine {state:22}{value / mib:8.0f} MiB")
    if args.json:
        print(orjson.dumps(r).decode())


if __name__ == "__main__":
    main()
