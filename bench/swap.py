"""Two models whose weights do not fit on the GPU together, under concurrent requests: they swap.

    python bench/swap.py [--device cuda:0] [--rounds 20] [--per-round 4] [--json]

Starts ``dsocr serve`` with ``synthetic`` (sized from the GPU's free memory so that it and
``ppocr`` cannot both be resident under the device arbiter's headroom rule) and ``ppocr``. Each
round sends ``--per-round`` requests to each model at once; the owners ask the arbiter for the
device and it offloads the other model. Reports the restores and loads done, the offloads made
for room, the latency of the requests, and whether every request was answered 200 within the
timeout (no hang). ``--device cpu --gb 0.1`` runs the same on a CPU host, where there is always
room and nothing swaps (a smoke run of the script). Prints a table and, with ``--json``, one line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.core import gpus  # noqa: E402
from supervisor.core.device_arbiter import HEADROOM_BYTES, HEADROOM_FACTOR  # noqa: E402
from tests.integration.server import free_port, render_text  # noqa: E402


def synthetic_gb(device: str) -> float:
    """The largest synthetic model that fits alone, with the arbiter's headroom."""
    index = int(device.split(":")[1]) if ":" in device else 0
    gpu = next(g for g in gpus.list_gpus() if g.index == index)
    return round((gpu.free_bytes - HEADROOM_BYTES) / HEADROOM_FACTOR / 2**30 - 0.25, 2)


def transitions(metrics: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for model, name, value in re.findall(
        r'dsocr_transitions_total\{model="([^"]+)",transition="([^"]+)"\} (\S+)', metrics
    ):
        counts[f"{model}.{name}"] = int(float(value))
    return counts


async def run(url: str, rounds: int, per_round: int, timeout: float) -> dict:
    page = render_text(["Swap 1234"], size=28)
    latencies: list[float] = []
    failures: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:

        async def one(model: str) -> None:
            form = aiohttp.FormData()
            form.add_field("model", model)
            form.add_field("file", page, filename="p.png", content_type="image/png")
            t0 = time.perf_counter()
            try:
                async with s.post(f"{url}/ocr", data=form) as resp:
                    if resp.status != 200:
                        failures.append(f"{model}: {resp.status} {(await resp.text())[:200]}")
            except asyncio.TimeoutError:
                failures.append(f"{model}: no answer in {timeout:.0f}s")
            latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        for r in range(rounds):
            first, second = ("synthetic", "ppocr") if r % 2 == 0 else ("ppocr", "synthetic")
            await asyncio.gather(*(one(first) for _ in range(per_round)), *(one(second) for _ in range(per_round)))
        seconds = time.perf_counter() - t0
        async with s.get(f"{url}/metrics") as resp:
            counts = transitions(await resp.text())
    return {
        "rounds": rounds,
        "requests": len(latencies),
        "all_answered_200": not failures,
        "failures": failures[:5],
        "seconds": round(seconds, 2),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_max_s": round(max(latencies), 3),
        "transitions": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--gb", type=float, default=None, help="synthetic model size (default: from free GPU memory)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gb = args.gb if args.gb is not None else synthetic_gb(args.device)
    port = free_port()
    cache = tempfile.mkdtemp(prefix="dsocr-swap-")
    cmd = [sys.executable, "-m", "supervisor.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model", "synthetic", "--model", "ppocr", "--device", args.device,
           "--model-option", f"synthetic.gb={gb}", "--model-option", f"synthetic.dir={cache}",
           "--idle-timeout", "0", "--log-level", "WARNING"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "DSOCR_CACHE_DIR": cache})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        result = {
            "device": args.device,
            "synthetic_gb": gb,
            **asyncio.run(run(url, args.rounds, args.per_round, args.timeout)),
        }
    finally:
        server.terminate()
        server.wait(30)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")
    sys.exit(0 if result["all_answered_200"] else 1)


if __name__ == "__main__":
    main()
