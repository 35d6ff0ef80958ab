"""HTTP under load: N concurrent clients against a server, and the model in-process as the ceiling.

    python bench/http_load.py [--url URL] [--clients 8] [--requests 64] [--json]

Without ``--url`` it starts ``dsocr serve`` on a free loopback port (CPU, embedded model) and
stops it after. The same images go through ``EngineRuntime`` in this process, one after another:
the service's overhead per request is what the two differ by at one client. Every loop is
bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sample import text_png


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def load(url: str, pictures: list[bytes], clients: int, total: int, timeout: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(pictures[i % len(pictures)])

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            data = queue.get_nowait()
            form = aiohttp.FormData()
            form.add_field("file", data, filename="x.png", content_type="image/png")
            t0 = time.perf_counter()
            async with session.post(f"{url}/ocr", data=form) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[resp.status] = errors.get(resp.status, 0) + 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": total,
        "ok": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / wall,
        "mean_s": statistics.fmean(latencies),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "p99_s": percentile(latencies, 99),
    }


def in_process(model: str, pictures: list[bytes], total: int) -> dict[str, Any]:
    from engine.runtime import EngineRuntime
    from ipc.weights import segment_name, unlink_segment

    runtime = EngineRuntime()
    segment = segment_name(os.getpid(), f"{model}-bench")
    try:
        runtime.load(model, segment, "cpu", {})
        runtime.infer(model, pictures[0], {})  # warm-up, as the server's first request was
        times = []
        for i in range(total):
            t0 = time.perf_counter()
            runtime.infer(model, pictures[i % len(pictures)], {})
            times.append(time.perf_counter() - t0)
    finally:
        runtime.close()
        unlink_segment(segment)
    return {"requests": total, "throughput_rps": 1 / statistics.fmean(times), "mean_s": statistics.fmean(times),
            "p50_s": percentile(times, 50)}  # fmt: skip


def start_server(model: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor.cli", "serve", "--port", str(port), "--device", "cpu",
         "--model", model, "--idle-timeout", "0", "--queue-size", "256", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None)
    ap.add_argument("--model", default="ppocr")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    pictures = [text_png(f"Order {10000 + i} shipped", 30) for i in range(8)]
    proc, url = (None, args.url) if args.url else start_server(args.model)
    try:
        asyncio.run(load(url, pictures[:1], 1, 1, args.timeout))  # first request loads the model
        one = asyncio.run(load(url, pictures, 1, max(8, args.requests // 4), args.timeout))
        many = asyncio.run(load(url, pictures, args.clients, args.requests, args.timeout))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    ceiling = in_process(args.model, pictures, max(8, args.requests // 4))
    overhead = one["mean_s"] - ceiling["mean_s"]
    print(f"{'':24} {'req/s':>8} {'mean':>8} {'p50':>8} {'p95':>8} {'p99':>8}")
    for name, r in (
        ("in-process (ceiling)", ceiling),
        ("HTTP, 1 client", one),
        (f"HTTP, {args.clients} clients", many),
    ):
        print(f"{name:24} {r['throughput_rps']:8.2f} {r['mean_s']:8.3f} {r['p50_s']:8.3f} "
              f"{r.get('p95_s', float('nan')):8.3f} {r.get('p99_s', float('nan')):8.3f}")  # fmt: skip
    print(f"service overhead per request (1 client): {overhead * 1000:.1f} ms; errors: {many['errors'] or 'none'}")
    if args.json:
        print(orjson.dumps({"in_process": ceiling, "one_client": one, "concurrent": many,
                            "overhead_per_request_s": overhead}).decode())  # fmt: skip


if __name__ == "__main__":
    main()
