"""Where a page's time goes in ppocr on the CPU: the detector, the recognizer and the line
classifier, timed around each network call while the real pipeline reads the page.

The engine's runtime (``engine.runtime.EngineRuntime``) loads ppocr as the service does (weights in
a shared segment, ONNX Runtime on the CPU, ``--threads`` intra-op threads); the page is
``bench/ocrmypdf.py``'s rendered letter page (150 dpi, 28 lines) or ``--image``. One warm-up read,
then ``--rounds`` reads: wall and CPU seconds a page, each network's seconds, calls and input shapes.

    .venv/bin/python bench/ppocr_stages.py --json [--image page.png] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ocrmypdf import rendered_pages  # noqa: E402

NETS = ("det", "rec", "cls")


def timed(nets, seconds: dict, calls: dict, shapes: dict) -> None:
    """Wrap each network call of ``nets`` to add its time, count and input shape."""
    for name in NETS:
        call = getattr(nets, name)

        def wrapper(pixels, call=call, name=name):
            start = time.perf_counter()
            try:
                return call(pixels)
            finally:
                seconds[name] += time.perf_counter() - start
                calls[name] += 1
                shapes[name].append(list(pixels.shape))

        setattr(nets, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="a page image (default: the rendered letter page)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)  # the engine's threads: the sessions take torch's count
    from engine.models.ppocr.pipeline import read_page
    from engine.runtime import EngineRuntime
    from ipc.weights import segment_name, unlink_segment

    image = Image.open(args.image) if args.image else rendered_pages(1)[0][0]
    pixels = np.asarray(image.convert("RGB"))
    runtime, segment = EngineRuntime(), segment_name(os.getpid(), "ppocr-stages")
    try:
        runtime.load("ppocr", segment, "cpu", {})
        nets = runtime.models["ppocr"].module.nets
        with torch.inference_mode():
            read_page(nets, pixels)  # warm-up
            seconds, calls, shapes = defaultdict(float), defaultdict(int), defaultdict(list)
            timed(nets, seconds, calls, shapes)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.rounds):
                page = read_page(nets, pixels)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        for name in NETS:  # the class's methods again: the wrappers hold nets, which holds the segment
            delattr(nets, name)
        del nets
    finally:
        runtime.close()
        unlink_segment(segment)
    rounds = args.rounds
    result = {
        "image": str(args.image or "rendered letter page"),
        "size": list(pixels.shape[:2]),
        "lines": len(page.lines),
        "threads": args.threads,
        "wall_s": round(wall / rounds, 3),
        "cpu_s": round(cpu / rounds, 3),
        "nets": {
            name: {
                "seconds": round(seconds[name] / rounds, 3),
                "calls": calls[name] // rounds,
                "inputs": shapes[name][: calls[name] // rounds],
            }
            for name in NETS
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['image']} {result['size']}: {result['lines']} lines, {result['wall_s']} s a page "
          f"({result['cpu_s']} CPU s, {args.threads} threads)")  # fmt: skip
    for name, net in result["nets"].items():
        print(f"  {name}  {net['seconds']:6.3f} s  {net['calls']} calls  {net['inputs']}")


if __name__ == "__main__":
    main()
