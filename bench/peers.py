"""dsocr's embedded model against the CPU tools people use instead: RapidOCR and Tesseract.

Renders pages with known text (an invoice, a two- and a three-column article, a receipt, a small
page, the invoice turned 90/180/270 degrees), adds the images of ``--folder`` (with a ``.txt``
beside each for its text, in reading order), and reads each page with every tool, alternating
tools within a round. Each tool runs in a worker process that stays warm between pages:

- ``dsocr``: the engine's runtime (``engine.runtime.EngineRuntime``) on the CPU, weights in shared
  memory as the service holds them, PNG bytes in (decoding counted, as the service counts it);
  its networks on ONNX Runtime, as the service runs them on the CPU;
- ``dsocr-torch`` (only when named in ``--tools``): the same with ``ppocr.backend=torch``;
- ``rapidocr``: RapidOCR 3.10 on ONNX Runtime with the same PP-OCRv6 files and its default
  settings (line classifier on), installed by this script into its own venv (``--peers-venv``,
  default ``$DSOCR_CACHE_DIR/peers-venv``), never into the project;
- ``tesseract``: the ``tesseract`` command, when it is on PATH (skipped otherwise).

Prints a table (groups: word recall / order score / seconds per page), then one JSON line keyed
by tool: ``seconds_per_page`` (median over pages of each page's median wall time),
``cpu_seconds_per_page`` (the same for CPU time, steadier on a shared machine), ``word_recall``,
``order_score`` (multi-column pages: the share of line pairs that come out in reading order),
``speedup_vs_rapidocr`` (RapidOCR's seconds per page over the tool's; ``cpu_speedup_vs_rapidocr``
the same for CPU time), per-group figures, and each worker's resident memory after the run.

    .venv/bin/python bench/peers.py --json [--rounds 3] [--threads N] [--folder DIR] [--tools dsocr,dsocr-torch,rapidocr]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
PEERS = ["rapidocr==3.10.0", "onnxruntime==1.32.0"]

CORPUS = (
    "The river rose slowly during the first week of March and reached its highest mark on the ninth "
    "day. Farmers along the valley moved their cattle to higher fields while the council opened two "
    "shelters. Engineers measured the flow every hour and sent their figures to the regional office "
    "by radio. Most roads stayed open, although the old bridge near the mill was closed for three "
    "days. Schools in the lower town taught their classes in the church hall until the water went "
    "down. A new gauge will be installed next spring so that warnings can reach every village "
    "sooner. Volunteers filled sandbags at the station and carried them to the houses closest to the "
    "bank. The weather service expects a dry summer, but the council keeps its plans ready for the "
    "autumn."
)
SENTENCES = CORPUS.split()


# -- pages with known text ---------------------------------------------------------------------


def _font(size: int, bold: bool = False):
    from PIL import ImageFont

    return ImageFont.truetype(str(FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size)


def _wrap(words: list[str], font, width: int) -> list[str]:
    lines, line = [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


def _words(start: int, count: int) -> list[str]:
    return [SENTENCES[(start + i) % len(SENTENCES)] for i in range(count)]


def _new(width: int, height: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    return image, ImageDraw.Draw(image)


def invoice():
    image, draw = _new(1224, 1584)
    lines: list[str] = []

    def put(x: int, y: int, text: str, size: int = 24, bold: bool = False) -> None:
        draw.text((x, y), text, font=_font(size, bold), fill="black")
        lines.append(text)

    put(90, 80, "INVOICE No. 2024-0517", 40, True)
    put(90, 150, "Northwind Supplies Ltd, 12 Harbour Road, Leith")
    put(90, 190, "Date: 17 May 2024    Due: 16 June 2024")
    put(90, 260, "Bill to: Acme Corporation, 400 Main Street, Springfield")
    items = [
        ("Steel widgets, boxed", "4", "39.96"),
        ("Copper fittings", "12", "18.40"),
        ("Shipping and handling", "1", "5.00"),
    ]
    for row, (name, qty, price) in enumerate([("Description", "Qty", "Amount"), *items]):
        y = 360 + 50 * row
        put(90, y, name, 24, row == 0)
        put(700, y, qty, 24, row == 0)
        put(950, y, price, 24, row == 0)
    put(700, 600, "Total due: 63.36 EUR", 28, True)
    y = 720
    for line in _wrap(_words(0, 60), _font(22), 1040):
        put(90, y, line, 22)
        y += 36
    return image, lines, "document"


def columns(count: int, width: int = 1224, height: int = 1584):
    image, draw = _new(width, height)
    title = "Flood report for the lower valley" if count == 2 else "Valley news in brief"
    draw.text((90, 70), title, font=_font(40, True), fill="black")
    lines = [title]
    gutter, margin = 60, 90
    column = (width - 2 * margin - (count - 1) * gutter) // count
    font = _font(22)
    for index in range(count):
        x, y = margin + index * (column + gutter), 170
        per_column = 120 // count  # the corpus holds ~135 words: no line repeats another
        for line in _wrap(_words(index * per_column, per_column), font, column):
            draw.text((x, y), line, font=font, fill="black")
            lines.append(line)
            y += 36
    return image, lines, "multi-column"


def receipt():
    image, draw = _new(520, 1000)
    rows = [
        "CORNER MARKET",
        "14 Station Street",
        "Bread 2.40",
        "Milk 1.15",
        "Apples 3.20",
        "Coffee beans 8.90",
        "Butter 2.75",
        "Total 18.40",
        "Card payment",
        "Thank you for shopping",
    ]
    for index, row in enumerate(rows):
        draw.text((40, 60 + 85 * index), row, font=_font(30, index in (0, 7)), fill="black")
    return image, rows, "document"


def small():
    image, draw = _new(240, 172)
    rows = ["Invoice 2041", "Total due: 44.96 EUR", "Shipped to Berlin", "Paid by card"]
    for index, row in enumerate(rows):
        draw.text((12, 12 + 26 * index), row, font=_font(12), fill="black")
    return image, rows, "document"


def pages() -> list[tuple[str, object, list[str], str]]:
    """(name, PIL image, lines in reading order, group) for each rendered page."""
    found = [("invoice", *invoice()), ("two-columns", *columns(2)), ("three-columns", *columns(3))]
    found += [("receipt", *receipt()), ("small-240x172", *small())]
    image, lines, _ = invoice()
    for degrees in (90, 180, 270):
        found.append((f"invoice-turned-{degrees}", image.rotate(-degrees, expand=True), lines, "rotated"))
    return found


def folder_pages(folder: Path) -> list[tuple[str, object, list[str], str]]:
    from PIL import Image

    found = []
    for path in sorted(folder.iterdir()):
        text = path.with_suffix(".txt")
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff") and text.is_file():
            lines = [line for line in text.read_text().splitlines() if line.strip()]
            found.append((path.name, Image.open(path).convert("RGB"), lines, "folder"))
    return found


# -- scores ------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return [w for w in (word.strip(".,:;!?()\"'").casefold() for word in text.split()) if w]


def word_recall(expected: list[str], text: str) -> float:
    want, got = Counter(words(" ".join(expected))), Counter(words(text))
    return sum((want & got).values()) / max(1, sum(want.values()))


def order_score(expected: list[str], text: str) -> float:
    """Share of pairs of expected lines that appear in the same order in ``text`` (found lines)."""
    out = words(text)
    index = {}
    for position in range(len(out) - 2):
        index.setdefault(tuple(out[position : position + 3]), position)
    positions = []
    for line in expected:
        line_words = words(line)
        grams = [tuple(line_words[k : k + 3]) for k in range(max(1, len(line_words) - 2))]
        hit = next((index[g] - k for k, g in enumerate(grams) if g in index), None)
        if hit is not None:
            positions.append(hit)
    pairs = [(a, b) for i, a in enumerate(positions) for b in positions[i + 1 :]]
    return sum(a < b for a, b in pairs) / len(pairs) if pairs else 0.0


# -- workers -----------------------------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _serve(read) -> None:
    """Worker loop: an image path per stdin line, a JSON line back with text, seconds and RSS."""
    for line in sys.stdin:
        path = line.strip()
        t0, c0 = time.perf_counter(), time.process_time()
        text = read(path)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"text": text, "seconds": seconds, "cpu_seconds": cpu, "rss_mb": _rss_mb()}), flush=True)


def dsocr_worker(backend: str = "auto") -> None:
    sys.path.insert(0, str(ROOT))
    from engine.runtime import EngineRuntime
    from ipc.weights import segment_name, unlink_segment

    runtime, segment = EngineRuntime(), segment_name(os.getpid(), "peers-ppocr")
    try:
        runtime.load("ppocr", segment, "cpu", {"backend": backend})
        _serve(lambda path: runtime.infer("ppocr", Path(path).read_bytes(), {})["text"])
    finally:
        runtime.close()
        unlink_segment(segment)


def rapidocr_worker() -> None:
    import logging

    from rapidocr import RapidOCR

    logging.disable(logging.INFO)
    threads = int(os.environ.get("PEERS_THREADS", "-1"))
    engine = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": threads})
    _serve(lambda path: "\n".join(engine(path).txts or ()))


class Worker:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )

    def read(self, path: Path) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args[:3]} died")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Tesseract:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def read(self, path: Path) -> dict:
        t0, c0 = time.perf_counter(), _children_cpu()
        argv = ["tesseract", str(path), "stdout"]
        text = subprocess.run(argv, capture_output=True, text=True, check=True, env=self.env).stdout
        return {"text": text, "seconds": time.perf_counter() - t0, "cpu_seconds": _children_cpu() - c0, "rss_mb": None}

    def close(self) -> None:
        pass


def peers_python(venv: Path, install: bool) -> Path:
    """The peers venv's python, made and filled on first use (RapidOCR stays out of the project)."""
    python = venv / "bin" / "python"
    if not python.exists():
        if not install:
            raise SystemExit(f"no peers venv at {venv}; run without --no-install to make it")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = subprocess.run([str(python), "-c", "import rapidocr, onnxruntime"], capture_output=True)
    if check.returncode != 0:
        if not install:
            raise SystemExit(f"RapidOCR missing in {venv}")
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
    return python


def start(tool: str, args: argparse.Namespace):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:  # torch's and tesseract's OpenMP, and ONNX Runtime's intra-op pool
        env |= {"OMP_NUM_THREADS": str(args.threads), "OMP_THREAD_LIMIT": str(args.threads)}
        env["PEERS_THREADS"] = str(args.threads)
    if tool in ("dsocr", "dsocr-torch"):
        return Worker([sys.executable, __file__, "--worker", tool], env)
    if tool == "rapidocr":
        python = peers_python(args.peers_venv, not args.no_install)
        return Worker([str(python), __file__, "--worker", "rapidocr"], env | {"PYTHONPATH": ""})
    return Tesseract(env)


# -- the run -----------------------------------------------------------------------------------


def summarize(results: dict, page_info: dict, rss: dict) -> dict:
    summary = {}
    for tool, per_page in results.items():
        seconds = {name: statistics.median(r["seconds"] for r in runs) for name, runs in per_page.items()}
        cpu = {name: statistics.median(r["cpu_seconds"] for r in runs) for name, runs in per_page.items()}
        groups: dict[str, dict] = {}
        for name, runs in per_page.items():
            lines, group = page_info[name]
            entry = groups.setdefault(group, {"recall": [], "order": [], "seconds": []})
            entry["recall"].append(word_recall(lines, runs[-1]["text"]))
            entry["order"].append(order_score(lines, runs[-1]["text"]))
            entry["seconds"].append(seconds[name])
        all_recall = [r for g in groups.values() for r in g["recall"]]
        multi = groups.get("multi-column", {}).get("order", [])
        summary[tool] = {
            "seconds_per_page": round(statistics.median(seconds.values()), 4),
            "cpu_seconds_per_page": round(statistics.median(cpu.values()), 4),
            "word_recall": round(statistics.mean(all_recall), 4),
            "order_score": round(statistics.mean(multi), 4) if multi else None,
            "groups": {
                name: {
                    "seconds_per_page": round(statistics.median(g["seconds"]), 4),
                    "word_recall": round(statistics.mean(g["recall"]), 4),
                    "order_score": round(statistics.mean(g["order"]), 4),
                }
                for name, g in groups.items()
            },
            "pages_seconds": {name: round(s, 4) for name, s in seconds.items()},
            "rss_mb_after": rss.get(tool),
        }
    base = summary.get("rapidocr", {})
    for entry in summary.values():
        for key, speedup in (
            ("seconds_per_page", "speedup_vs_rapidocr"),
            ("cpu_seconds_per_page", "cpu_speedup_vs_rapidocr"),
        ):
            entry[speedup] = round(base[key] / entry[key], 3) if base else None
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="more pages: images with a .txt of their text beside them")
    parser.add_argument("--tools", default="dsocr,rapidocr,tesseract")
    parser.add_argument("--json", action="store_true", help="end with one JSON line keyed by tool")
    parser.add_argument("--threads", type=int, help="CPU threads for every tool (default: each tool's own)")
    cache = Path(os.environ.get("DSOCR_CACHE_DIR", "~/.cache/dsocr")).expanduser()
    parser.add_argument("--peers-venv", type=Path, default=cache / "peers-venv")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing RapidOCR")
    parser.add_argument("--worker", choices=["dsocr", "dsocr-torch", "rapidocr"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        workers = {"dsocr": dsocr_worker, "dsocr-torch": lambda: dsocr_worker("torch"), "rapidocr": rapidocr_worker}
        workers[args.worker]()
        return

    tools = [t for t in args.tools.split(",") if t]
    if "tesseract" in tools and shutil.which("tesseract") is None:
        print("tesseract is not on PATH: skipped", file=sys.stderr)
        tools.remove("tesseract")
    page_list = pages() + (folder_pages(args.folder) if args.folder else [])
    page_info = {name: (lines, group) for name, _, lines, group in page_list}
    workers = {tool: start(tool, args) for tool in tools}
    results: dict[str, dict[str, list]] = {tool: {name: [] for name in page_info} for tool in tools}
    rss: dict[str, float | None] = {}  # each worker's resident memory after its last page
    try:
        with tempfile.TemporaryDirectory(prefix="dsocr-peers-") as tmp:
            paths = {}
            for name, image, _, _ in page_list:
                paths[name] = Path(tmp) / f"{name}.png"
                image.save(paths[name])
            for tool in tools:  # warm-up: first inference, lazy initialisation
                workers[tool].read(paths[page_list[0][0]])
            for round_index in range(args.rounds):
                for name in paths:
                    order = tools[round_index % len(tools) :] + tools[: round_index % len(tools)]
                    for tool in order:
                        reply = workers[tool].read(paths[name])
                        results[tool][name].append(reply)
                        rss[tool] = round(reply["rss_mb"], 1) if reply["rss_mb"] else None
    finally:
        for worker in workers.values():
            worker.close()
    summary = summarize(results, page_info, rss)
    print(f"{'tool':<11} {'s/page':>7} {'speedup':>7} {'cpu s':>6} {'cpu x':>6} {'recall':>6} {'order':>6}  groups")
    for tool, entry in summary.items():
        groups = "  ".join(
            f"{g}: {v['word_recall']:.3f} / {v['order_score']:.2f} / {v['seconds_per_page']:.2f}"
            for g, v in entry["groups"].items()
        )
        order = f"{entry['order_score']:.3f}" if entry["order_score"] is not None else "-"
        print(
            f"{tool:<11} {entry['seconds_per_page']:>7.3f} {entry['speedup_vs_rapidocr'] or 0:>7.2f}"
            f" {entry['cpu_seconds_per_page']:>6.3f} {entry['cpu_speedup_vs_rapidocr'] or 0:>6.2f}"
            f" {entry['word_recall']:>6.3f} {order:>6}  {groups}"
        )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
