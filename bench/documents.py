"""Documents, not lines: dsocr ``document`` against RapidOCR + rapid-layout and plain dsocr ``ocr``.

Renders the pages of ``bench/document_pages.py`` (headings, two columns, a ruled and an unruled
table, a figure with its caption, a running header, a footer and a page number; sans and serif)
and reads each with every tool, alternating tools within a round, each in a worker that stays warm:

- ``dsocr-document``: the engine's runtime on the CPU (weights in shared memory, ONNX Runtime),
  prompt type ``document``: layout net, regions, markdown;
- ``dsocr-ocr``: the same engine, prompt type ``ocr`` (lines only);
- ``rapid``: RapidOCR 3.10 (same PP-OCRv6 files) and rapid-layout 1.2.1 (same CDLA file) in the
  peers venv of ``bench/peers.py``, their own pipelines, glued the plain way: the page's regions
  top to bottom (left to right within a row), each region's OCR lines by their centres, titles as
  ``#`` headings, a table's lines grouped into rows by their centres, headers and footers left out.
  Neither package writes markdown or orders regions itself.

Scores per page, averaged: ``heading_recall`` (the page's headings found as markdown headings of
the same text; ``heading_level_accuracy``: at the right level too), ``table_cell_accuracy`` (cells
of each rendered table found at their row and column in a markdown table of the answer),
``order_score`` (``bench/peers.py``'s: pairs of body lines in reading order), ``furniture_leak``
(share of pages whose text holds the header, footer or page number). ``seconds_per_page``: median
over pages of each page's median wall time; ``document_over_ocr``: dsocr ``document``'s seconds
over ``ocr``'s, page by page (median).

    .venv/bin/python bench/documents.py --json [--rounds 3] [--threads N] [--tools dsocr-document,dsocr-ocr,rapid]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers import Worker, _serve, order_score  # noqa: E402

PEERS = ["rapidocr==3.10.0", "rapid-layout==1.2.1", "onnxruntime==1.32.0"]


# -- scores ------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return re.sub(r"[^\w.]", "", text).casefold()


def headings(text: str) -> list[tuple[str, int]]:
    found = []
    for line in text.splitlines():
        match = re.match(r"^(#{1,6})\s+(.*)$", line.strip())
        if match:
            found.append((_norm(match[2]), len(match[1])))
    return found


def tables(text: str) -> list[list[list[str]]]:
    """The markdown tables of ``text``: rows of cells, the separator row left out."""
    found, current = [], []
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line[1:-1].split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def cell_accuracy(truth: list[list[str]], answer: list[list[list[str]]]) -> float:
    """Share of the truth's cells at their place in the answer's best-matching table."""
    total = sum(len(row) for row in truth)
    best = 0
    for table in answer:
        hits = sum(
            1
            for r, row in enumerate(truth)
            for c, cell in enumerate(row)
            if r < len(table) and c < len(table[r]) and _norm(table[r][c]) == _norm(cell)
        )
        best = max(best, hits)
    return best / total


def furniture_leaked(furniture: list[str], text: str) -> bool:
    header, footer, number = furniture
    lines = [line.strip() for line in text.splitlines()]
    flat = _norm(text)
    return (
        _norm(header) in flat
        or _norm(footer) in flat
        or number in lines
        or any(line.endswith(f" {number}") and _norm(footer) in _norm(line) for line in lines)
    )


def score(truth, text: str) -> dict[str, float]:
    want = [(_norm(t), level) for t, level in truth.headings]
    got = headings(text)
    got_texts = [t for t, _ in got]
    return {
        "heading_recall": sum(t in got_texts for t, _ in want) / len(want),
        "heading_level_accuracy": sum((t, level) in got for t, level in want) / len(want),
        "table_cell_accuracy": statistics.mean(cell_accuracy(t, tables(text)) for t in truth.tables),
        "order_score": order_score(truth.body, re.sub(r"[#|*]", " ", text)),
        "furniture_leak": float(furniture_leaked(truth.furniture, text)),
    }


# -- workers -----------------------------------------------------------------------------------


def dsocr_worker(prompt_type: str) -> None:
    from engine.runtime import EngineRuntime
    from ipc.weights import segment_name, unlink_segment

    runtime, segment = EngineRuntime(), segment_name(os.getpid(), f"docs-{prompt_type}")
    try:
        runtime.load("ppocr", segment, "cpu", {})
        options = {"prompt_type": prompt_type}
        _serve(lambda path: runtime.infer("ppocr", Path(path).read_bytes(), options)["text"])
    finally:
        runtime.close()
        unlink_segment(segment)


def _rows(items: list[tuple[tuple[float, float, float, float], str]]) -> list[list[str]]:
    """Lines grouped into rows by their vertical centres, each row left to right."""
    items = sorted(items, key=lambda item: (item[0][1] + item[0][3]) / 2)
    rows: list[list] = []
    for box, text in items:
        centre, height = (box[1] + box[3]) / 2, box[3] - box[1]
        if rows and abs(centre - rows[-1][0]) <= 0.5 * height:
            rows[-1][1].append((box, text))
        else:
            rows.append([centre, [(box, text)]])
    return [[text for _, text in sorted(row, key=lambda item: item[0][0])] for _, row in rows]


def rapid_worker() -> None:
    import logging

    import numpy as np
    from rapid_layout import RapidLayout
    from rapidocr import RapidOCR

    logging.disable(logging.INFO)
    threads = int(os.environ.get("PEERS_THREADS", "-1"))
    ocr = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": threads})
    layout = RapidLayout(engine_cfg={"intra_op_num_threads": threads} if threads > 0 else {})

    def read(path: str) -> str:
        result = ocr(path)
        lines = [
            ((float(np.min(b[:, 0])), float(np.min(b[:, 1])), float(np.max(b[:, 0])), float(np.max(b[:, 1]))), t)
            for b, t in zip(np.asarray(result.boxes) if result.boxes is not None else [], result.txts or ())
        ]
        regions = layout(path)
        found = sorted(zip(regions.boxes, regions.class_names), key=lambda r: (round(r[0][1] / 20), r[0][0]))
        used: set[int] = set()
        parts = []
        for box, kind in found:
            inside = []
            for i, (rect, text) in enumerate(lines):
                cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
                if i not in used and box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
                    inside.append((rect, text))
                    used.add(i)
            if kind in ("header", "footer") or not inside:
                continue
            if kind == "title":
                parts.append("# " + " ".join(t for _, t in inside))
            elif kind == "table":
                rows = _rows(inside)
                width = max(len(r) for r in rows)
                body = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
                parts.append("\n".join([body[0], "| " + " | ".join(["---"] * width) + " |", *body[1:]]))
            else:
                parts.append(" ".join(t for _, t in sorted(inside, key=lambda item: item[0][1])))
        parts += [text for i, (_, text) in enumerate(lines) if i not in used]  # lines no region holds
        return "\n\n".join(parts)

    _serve(read)


def peers_python(venv: Path, install: bool) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        if not install:
            raise SystemExit(f"no peers venv at {venv}; run without --no-install to make it")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = subprocess.run([str(python), "-c", "import rapidocr, rapid_layout, onnxruntime"], capture_output=True)
    if check.returncode != 0:
        if not install:
            raise SystemExit(f"RapidOCR or rapid-layout missing in {venv}")
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
    return python


def start(tool: str, args: argparse.Namespace) -> Worker:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:
        env |= {"OMP_NUM_THREADS": str(args.threads), "PEERS_THREADS": str(args.threads)}
    if tool == "rapid":
        python = peers_python(args.peers_venv, not args.no_install)
        return Worker([str(python), __file__, "--worker", tool], env)
    return Worker([sys.executable, __file__, "--worker", tool], env)


# -- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default="dsocr-document,dsocr-ocr,rapid")
    parser.add_argument("--json", action="store_true", help="end with one JSON line keyed by tool")
    parser.add_argument("--threads", type=int, help="CPU threads for every tool (default: each tool's own)")
    cache = Path(os.environ.get("DSOCR_CACHE_DIR", "~/.cache/dsocr")).expanduser()
    parser.add_argument("--peers-venv", type=Path, default=cache / "peers-venv")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing the peers")
    parser.add_argument("--worker", choices=["dsocr-document", "dsocr-ocr", "rapid"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker == "rapid":
            rapid_worker()
        else:
            dsocr_worker(args.worker.removeprefix("dsocr-"))
        return

    from bench.document_pages import pages

    tools = [t for t in args.tools.split(",") if t]
    page_list = pages()
    workers = {tool: start(tool, args) for tool in tools}
    replies: dict[str, dict[str, list[dict]]] = {tool: {name: [] for name, _, _ in page_list} for tool in tools}
    try:
        with tempfile.TemporaryDirectory(prefix="dsocr-documents-") as tmp:
            paths = {}
            for name, image, _ in page_list:
                paths[name] = Path(tmp) / f"{name}.png"
                image.save(paths[name])
            for tool in tools:  # warm-up: first inference, lazy initialisation
                workers[tool].read(paths[page_list[0][0]])
            for round_index in range(args.rounds):
                for name in paths:
                    order = tools[round_index % len(tools) :] + tools[: round_index % len(tools)]
                    for tool in order:
                        replies[tool][name].append(workers[tool].read(paths[name]))
    finally:
        for worker in workers.values():
            worker.close()

    truths = {name: truth for name, _, truth in page_list}
    summary = {}
    for tool, per_page in replies.items():
        seconds = {name: statistics.median(r["seconds"] for r in runs) for name, runs in per_page.items()}
        scores = [score(truths[name], runs[-1]["text"]) for name, runs in per_page.items()]
        summary[tool] = {
            "seconds_per_page": round(statistics.median(seconds.values()), 4),
            **{key: round(statistics.mean(s[key] for s in scores), 4) for key in scores[0]},
            "pages_seconds": {name: round(s, 4) for name, s in seconds.items()},
        }
    if "dsocr-document" in summary and "dsocr-ocr" in summary:
        doc, ocr = summary["dsocr-document"]["pages_seconds"], summary["dsocr-ocr"]["pages_seconds"]
        summary["dsocr-document"]["document_over_ocr"] = round(statistics.median(doc[n] / ocr[n] for n in doc), 3)
    if "rapid" in summary:
        for entry in summary.values():
            entry["speedup_vs_rapid"] = round(summary["rapid"]["seconds_per_page"] / entry["seconds_per_page"], 3)
    keys = ["seconds_per_page", "heading_recall", "heading_level_accuracy", "table_cell_accuracy"]
    keys += ["order_score", "furniture_leak"]
    print(f"{'tool':<15} " + " ".join(f"{k[:14]:>14}" for k in keys))
    for tool, entry in summary.items():
        print(f"{tool:<15} " + " ".join(f"{entry[k]:>14.3f}" for k in keys))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
