"""A VLM's pages per second at batch 1, 2, 4 and 8, through a real engine, in one command:

    python bench/batching.py                                   # the tiny random DeepSeek-OCR-2 on CPU
    python bench/batching.py --model glm-ocr-tiny              # any VLM of bench/tiny_models, tiny
    python bench/batching.py --model deepseek-ocr-2 --device cuda --json   # the real checkpoint

The same pages (8 by default) run as ``Infer`` messages of 1, 2, 4 and 8 requests in one
engine process (``EngineHandle``), after a warm-up; pages/s = pages / wall time of those messages
(best of ``--rounds``, the sizes interleaved).
``same_as_sequential`` says whether every batch size gave exactly the batch-1 answers (text,
raw_text, finish_reason, token counts). ``NAME-tiny`` builds the model's tiny random checkpoint
(``bench/tiny_models``) in a temporary folder (no download); ``NAME`` loads ``--model-path`` (a
folder or hub id, default the adapter's, taken from the hub cache or downloaded once).
Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tiny_models
from ipc import protocol as p
from ipc.catalog import MODELS
from ipc.weights import segment_name, unlink_segment
from supervisor.core.engine_handle import EngineHandle

BATCHES = (1, 2, 4, 8)
SAME_KEYS = ("text", "raw_text", "finish_reason", "usage")
WORDS = ["Invoice", "total", "Berlin", "Shipped", "the", "document", "2041", "385.20", "R&D", "table"]


def page(index: int, width: int, lines: int, size: int) -> bytes:
    """A page of ``lines`` lines of text (different on every page), as PNG."""
    font = ImageFont.load_default(size=size)
    img = Image.new("RGB", (width, (lines + 2) * size * 3 // 2), "white")
    draw = ImageDraw.Draw(img)
    for line in range(lines):
        text = " ".join(WORDS[(index + line + k) % len(WORDS)] for k in range(6))
        draw.text((size, size + line * size * 3 // 2), f"{index}.{line} {text}", font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def pages_for(model: str, count: int) -> list[bytes]:
    if model.endswith("-tiny"):  # small pages: the tiny model's global view (256 px), no tiles
        return [page(i, 180, 2, 10) for i in range(count)]
    return [page(i, 1240, 30, 22) for i in range(count)]  # A4-like text pages at ~150 dpi


async def run_batches(engine: EngineHandle, model: str, images: list[bytes], options: dict[str, Any], batch: int,
                      timeout: float) -> tuple[float, list[dict[str, Any]]]:  # fmt: skip
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        reply = await engine.request(p.Infer(0, model, [options] * len(chunk), images=chunk), timeout=timeout)
        results.extend(reply["results"])
    return time.perf_counter() - t0, results


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"max_batch": max(BATCHES)}
    model = args.model.removesuffix(tiny_models.TINY)
    tmp = None
    if args.model.endswith(tiny_models.TINY):
        tmp = tempfile.TemporaryDirectory(prefix="dsocr-bench-tiny-")
        options["model_path"] = str(tiny_models.build(model, Path(tmp.name)))
    elif args.model_path:
        options["model_path"] = args.model_path
    request = {"prompt_type": args.prompt_type, "max_tokens": args.max_tokens}
    images = pages_for(args.model, args.pages)
    segment = segment_name(os.getpid(), "bench-batching")
    engine = EngineHandle(log_level="WARNING", boot_timeout=600, threads=args.threads)
    out: dict[str, Any] = {"model": args.model, "device": args.device}
    try:
        await engine.spawn()
        t0 = time.perf_counter()
        await engine.request(p.Load(0, model, segment, args.device, options), timeout=3600)
        out["load_s"] = round(time.perf_counter() - t0, 3)
        await run_batches(engine, model, images[:1], request, 1, args.timeout)  # warm-up
        seconds: dict[str, float] = {}
        answers: dict[int, list[dict[str, Any]]] = {}
        for _ in range(args.rounds):  # rounds interleave the sizes; the best round counts (shared hosts are noisy)
            for batch in BATCHES:
                took, answers[batch] = await run_batches(engine, model, images, request, batch, args.timeout)
                seconds[str(batch)] = min(took, seconds.get(str(batch), took))
    finally:
        await engine.kill()
        unlink_segment(segment)
        if tmp is not None:
            tmp.cleanup()
    errors = [r["error"] for rs in answers.values() for r in rs if "error" in r]
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    reference = [{k: r[k] for k in SAME_KEYS} for r in answers[1]]
    differing = {
        str(b): sum({k: r[k] for k in SAME_KEYS} != ref for r, ref in zip(answers[b], reference)) for b in BATCHES
    }
    out.update(
        pages=len(images),
        prompt_type=args.prompt_type,
        max_tokens=args.max_tokens,
        pages_per_s={b: round(len(images) / s, 3) for b, s in seconds.items()},
        seconds={b: round(s, 3) for b, s in seconds.items()},
        speedup_8_vs_1=round(seconds["1"] / seconds["8"], 2),
        same_as_sequential=not any(differing.values()),
        pages_differing=differing,
        completion_tokens=sum(r["usage"]["completion_tokens"] for r in answers[1]),
        finish_reasons=sorted({r["finish_reason"] for r in answers[1]}),
        device_memory=answers[max(BATCHES)][-1].get("device_memory"),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tiny = sorted(f"{name}{tiny_models.TINY}" for name in tiny_models.builders())
    ap.add_argument("--model", choices=[*tiny, *sorted(tiny_models.builders())], default="deepseek-ocr-2-tiny")
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cpu for tiny, cuda otherwise)")
    ap.add_argument("--model-path", default=None, help="folder or hub id of the real checkpoint")
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=None, help="per page (default: 128 tiny, 1024 real)")
    ap.add_argument("--prompt-type", default=None, help="default: free (tiny), document (real)")
    ap.add_argument("--rounds", type=int, default=2, help="each batch size runs this often; the best counts")
    ap.add_argument("--threads", type=int, default=None, help="engine CPU threads (default: 1 on CPU)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per Infer message")
    ap.add_argument("--json", action="store_true", help="only the JSON line")
    args = ap.parse_args()
    tiny = args.model.endswith("-tiny")
    args.device = args.device or ("cpu" if tiny else "cuda")
    args.max_tokens = args.max_tokens or (128 if tiny else 1024)
    info = MODELS[args.model.removesuffix(tiny_models.TINY)]
    # plain text reading for the tiny ones (their answers are random), the document task for real pages
    args.prompt_type = args.prompt_type or (
        "free" if tiny and "free" in info.prompt_types else info.default_prompt_type
    )
    if args.threads is None and args.device == "cpu":
        args.threads = 1  # one thread: batches are compared on the same compute, without oversubscription
    result = asyncio.run(measure(args))
    if not args.json:
        print(f"{result['model']} on {result['device']}: {result['pages']} pages, {args.prompt_type}, "
              f"<= {args.max_tokens} tokens each ({result['completion_tokens']} generated at batch 1)")  # fmt: skip
        for batch in BATCHES:
            b = str(batch)
            print(f"  batch {batch}: {result['pages_per_s'][b]:8.3f} pages/s  ({result['seconds'][b]:.2f} s, "
                  f"{result['pages_differing'][b]} pages differ from batch 1)")  # fmt: skip
        print(f"  batch 8 vs 1: {result['speedup_8_vs_1']}x; same as sequential: {result['same_as_sequential']}")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
