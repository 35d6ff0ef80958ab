"""How the engines' CPU threads wait, measured: ppocr pages with 2 threads, in-process.

    python bench/omp_wait.py [--rounds 2] [--pages 8] [--busy N]

Four ways, each in a fresh interpreter (OpenMP reads OMP_WAIT_POLICY when torch loads it),
alternating: ppocr on torch with OpenMP's default wait policy and with PASSIVE (engines set
PASSIVE, engine/main.py), and ppocr on ONNX Runtime (the CPU's default) with its workers spinning
between operators (``ppocr.spinning=1``) and sleeping (the default). ``--busy N`` keeps N other
processes spinning on the CPU meanwhile, as other engines or jobs sharing the cores would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, statistics, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(2)
from engine.runtime import EngineRuntime
from ipc.weights import segment_name, unlink_segment
from tests.helpers import render_text
image = render_text(["Invoice 2041 total 385.20", "Shipped to Berlin", "Order 7731 paid in full on 2026-11-20"] * 3)
rt = EngineRuntime()
seg = segment_name(os.getpid(), "omp-wait")
rt.load("ppocr", seg, "cpu", {options})
try:
    rt.infer("ppocr", image, {{}})
    wall, cpu = [], []
    for _ in range({pages}):
        t0, c0 = time.perf_counter(), time.process_time()
        rt.infer("ppocr", image, {{}})
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(statistics.median(wall), statistics.median(cpu))
finally:
    rt.close()
    unlink_segment(seg)
"""


# name -> (OMP_WAIT_POLICY or None for OpenMP's default, ppocr adapter options)
WAYS = {
    "torch, OpenMP default": (None, {"backend": "torch"}),
    "torch, PASSIVE": ("PASSIVE", {"backend": "torch"}),
    "onnxruntime, spinning": ("PASSIVE", {"backend": "onnxruntime", "spinning": "1"}),
    "onnxruntime, sleeping": ("PASSIVE", {"backend": "onnxruntime"}),
}


def run(way: str, pages: int) -> tuple[float, float]:
    policy, options = WAYS[way]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    child = CHILD.format(root=str(ROOT), pages=pages, options=repr(options))
    out = subprocess.run([sys.executable, "-c", child], env=env,
                         capture_output=True, text=True, check=True, timeout=600).stdout  # fmt: skip
    wall, cpu = map(float, out.split()[-2:])
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--busy", type=int, default=0, help="processes kept busy on the CPU meanwhile")
    args = ap.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        measure(args)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def measure(args: argparse.Namespace) -> None:
    results: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for policy in results:
            results[policy].append(run(policy, args.pages))
    for policy, runs in results.items():
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        print(f"{policy:22s} wall per page {statistics.median(walls):.3f} s (runs {', '.join(f'{w:.3f}' for w in walls)}), "
              f"CPU per page {statistics.median(cpus):.3f} s")  # fmt: skip
    print(f"({time.perf_counter() - t0:.0f} s in all, {args.busy} busy processes; "
          f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
