"""Every tiny VLM through one real server on a GPU, in bf16, batch 8 against batch 1, in one command:

    python bench/vlm_gpu.py [--device cuda:0] [--models glm-ocr,paddleocr-vl] [--pages 8] [--json]

Builds each model's tiny random checkpoint (``bench/tiny_models``, every VLM by default), serves
them all at once (``dsocr serve --device cuda --max-batch 8``; the adapters run bf16 on CUDA), and
for each model sends ``--pages`` different pages one by one (batch 1), then all at once (one batch
of up to 8): pages/s of each, and whether the batch gave exactly the one-by-one answers. Then
requests alternate between the models, and ``/gpu/status`` shows each model's state, segment and
engine GPU memory. Without CUDA it stops at once with exit status 2; ``--device cpu`` runs the
same on a CPU host (float32, a smoke run of the script). Exit status 0 when every request was
answered (and, on the CPU, every batch matched: in bf16 a batch's different sums can flip a random
model's near-ties, which ``same_as_sequential`` and ``pages_differing`` report). Prints a table and, with ``--json``, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import tiny_models  # noqa: E402
from tests.integration.server import free_port, render_text  # noqa: E402


def cuda_or_exit(device: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        print(f"vlm_gpu: no CUDA device for --device {device} (torch {torch.__version__}, "
              f"CUDA build {torch.version.cuda}); --device cpu runs a smoke run", file=sys.stderr)  # fmt: skip
        sys.exit(2)


async def ocr(s: aiohttp.ClientSession, url: str, model: str, page: bytes, max_tokens: int) -> dict[str, Any]:
    form = aiohttp.FormData()
    for key, value in (("model", model), ("prompt_type", "free"), ("max_tokens", str(max_tokens))):
        form.add_field(key, value)
    form.add_field("file", page, filename="page.png", content_type="image/png")
    async with s.post(f"{url}/ocr", data=form) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"{model}: {resp.status} {body.get('error')}")
        return body


async def one_model(s: aiohttp.ClientSession, url: str, model: str, pages: list[bytes], max_tokens: int) -> dict:
    await ocr(s, url, model, pages[0], max_tokens)  # load + warm-up
    t0 = time.perf_counter()
    alone = [await ocr(s, url, model, page, max_tokens) for page in pages]
    t1 = time.perf_counter()
    together = await asyncio.gather(*(ocr(s, url, model, page, max_tokens) for page in pages))
    t2 = time.perf_counter()
    same = [(a["raw_text"], a["text"]) == (b["raw_text"], b["text"]) for a, b in zip(alone, together)]
    return {
        "pages_per_s_1": round(len(pages) / (t1 - t0), 3),
        "pages_per_s_8": round(len(pages) / (t2 - t1), 3),
        "speedup_8_vs_1": round((t1 - t0) / (t2 - t1), 2),
        "same_as_sequential": all(same),
        "pages_differing": same.count(False),
    }


async def run(url: str, models: list[str], pages: list[bytes], max_tokens: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        results = {m: await one_model(s, url, m, pages, max_tokens) for m in models}
        alternating = [await ocr(s, url, m, pages[0], max_tokens) for _ in range(2) for m in models]
        async with s.get(f"{url}/gpu/status") as resp:
            status = await resp.json()
    for st in status["models"]:
        results[st["model"]]["status"] = {k: st.get(k) for k in ("state", "segment", "engine_gpu_memory_bytes")}
    return {"models": results, "alternating_answered": len(alternating) == 2 * len(models)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--models", default=",".join(sorted(tiny_models.builders())))
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cuda_or_exit(args.device)
    models = [m.strip().removesuffix(tiny_models.TINY) for m in args.models.split(",") if m.strip()]
    work = tempfile.TemporaryDirectory(prefix="dsocr-vlm-gpu-")
    cmd = [sys.executable, "-m", "supervisor.cli.main", "serve", "--host", "127.0.0.1", "--device", args.device,
           "--max-batch", "8", "--idle-timeout", "0", "--log-level", "WARNING"]  # fmt: skip
    for model in models:
        folder = tiny_models.build(model, Path(work.name) / model)
        cmd += ["--model", model, "--model-option", f"{model}.model_path={folder}"]
    port = free_port()
    cmd += ["--port", str(port)]
    env = {**os.environ, "DSOCR_CACHE_DIR": str(Path(work.name) / "cache")}
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    pages = [render_text([f"Invoice {2041 + i}", f"total {i}.20"], size=14 + 2 * (i % 4)) for i in range(args.pages)]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        result = {"device": args.device, "pages": args.pages, **asyncio.run(run(url, models, pages, args.max_tokens))}
    finally:
        server.terminate()
        server.wait(30)
        work.cleanup()
    # float32 on the CPU is batch-invariant; bf16 on a GPU may flip a random model's near-ties (reported, not failed)
    exact = all(r["same_as_sequential"] for r in result["models"].values())
    ok = result["alternating_answered"] and (exact or args.device.startswith("cuda"))
    result["ok"] = ok
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for model, r in result["models"].items():
            print(f"{model:>16}: batch 1 {r['pages_per_s_1']:7.2f} pages/s, batch 8 {r['pages_per_s_8']:7.2f} "
                  f"(x{r['speedup_8_vs_1']}), same as one by one: {r['same_as_sequential']}, {r['status']}")  # fmt: skip
        print(f"alternating requests answered: {result['alternating_answered']}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
