"""OCRmyPDF with Tesseract, with the dsocr plugin (ppocr on a dsocr server) and with
``ocrmypdf-rapidocr`` (RapidOCR in every OCRmyPDF worker), on the same scans: seconds per page and
word recall.

Scans: OCRmyPDF's own ``linn.pdf`` (300 dpi, two columns; its transcript ``linn.txt`` is the
reference, fetched with its sdist into ``.cache/ocrmypdf``) and ``--pages`` rendered letter pages of
known text (150 dpi, DejaVu Sans, one PDF). Each engine runs every file with ``--jobs``, ``--output-type
pdf --force-ocr``; dsocr's server is started once (``dsocr serve --device --max-batch``) and warmed on
one page first, so the figures are those of a running service. ``ocrmypdf-rapidocr`` 1.0.1 runs in
its own venv (``--rapidocr-venv``, default ``.cache/ocrmypdf/rapidocr-venv``, made by this script
with pip when missing; never the project's), skipped with the reason when it does not install. Recall: the share of the reference's
words (lower case, letters and digits, with counts) that ``pdftotext`` finds in the output.

    .venv/bin/python bench/ocrmypdf.py --json [--pages 10] [--jobs 2] [--device cpu] [--no-rapidocr]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.server import running_server  # noqa: E402
from tests.ocrmypdf_resources import pdf_text, resources, word_recall  # noqa: E402

WORDS = [
    "river",
    "harbour",
    "council",
    "bridge",
    "engineer",
    "figure",
    "office",
    "weather",
    "crossing",
    "cargo",
    "tonnes",
    "measured",
    "shelter",
    "valley",
    "farmer",
    "cattle",
    "report",
    "quarterly",
    "station",
    "signal",
    "morning",
    "evening",
    "market",
    "printed",
    "letter",
    "number",
    "invoice",
    "account",
    "balance",
    "delivery",
    "customer",
    "address",
    "street",
    "north",
    "south",
    "east",
    "west",
    "winter",
    "summer",
    "spring",
    "autumn",
    "journey",
    "passenger",
    "ticket",
]


def rendered_pages(pages: int, seed: int = 7) -> tuple[list[Image.Image], str]:
    """``pages`` letter pages at 150 dpi (1275 x 1650, grey) with 28 lines each, and their text."""
    rng = random.Random(seed)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 24)
    images, text = [], []
    for _ in range(pages):
        image = Image.new("L", (1275, 1650), 255)
        draw = ImageDraw.Draw(image)
        for row in range(28):
            line = " ".join(rng.choice(WORDS) for _ in range(7)) + f" {rng.randint(10, 9999)}"
            draw.text((110, 110 + row * 50), line, font=font, fill=0)
            text.append(line)
        images.append(image)
    return images, "\n".join(text)


def rendered_scan(pages: int, seed: int = 7) -> tuple[bytes, str]:
    """A PDF of ``rendered_pages(pages, seed)``, and its text."""
    images, text = rendered_pages(pages, seed)
    path = Path(tempfile.mkdtemp()) / "scan.pdf"
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=150)
    return path.read_bytes(), text


RAPIDOCR = ["ocrmypdf==17.13.0", "ocrmypdf-rapidocr==1.0.1"]


def rapidocr_python(venv: Path) -> Path:
    """The venv's python with ``ocrmypdf-rapidocr``, installed on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *RAPIDOCR], check=True, timeout=1800)
    return python


def run(engine_args: list[str], source: Path, out: Path, jobs: int, python: str = sys.executable) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [python, "-m", "ocrmypdf", *engine_args, "--jobs", str(jobs), "--output-type", "pdf",
         "--force-ocr", str(source), str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"ocrmypdf failed ({done.returncode}): {done.stderr[-1500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch", default=None, help="dsocr serve --max-batch (default: the device's)")
    parser.add_argument("--rapidocr-venv", type=Path, default=ROOT / ".cache" / "ocrmypdf" / "rapidocr-venv")
    parser.add_argument("--no-rapidocr", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = resources()
    work = Path(tempfile.mkdtemp())
    scan, scan_text = rendered_scan(args.pages)
    (work / "rendered.pdf").write_bytes(scan)
    files = {
        "linn": (folder / "linn.pdf", (folder / "linn.txt").read_text(), 1),
        "rendered": (work / "rendered.pdf", scan_text, args.pages),
    }
    serve = ["--device", args.device, *(["--max-batch", args.max_batch] if args.max_batch else [])]
    results: dict[str, dict] = {}
    with running_server(*serve) as server:
        plugin = ["--plugin", "dsocr_ocrmypdf", "--dsocr-url", server.url]
        run(plugin, folder / "linn.pdf", work / "warm.pdf", 1)  # the model loads once, before timing
        engines = [("tesseract", [], sys.executable), ("dsocr", plugin, sys.executable)]
        if not args.no_rapidocr:
            try:
                engines.append(
                    ("rapidocr", ["--plugin", "ocrmypdf_rapidocr"], str(rapidocr_python(args.rapidocr_venv)))
                )
            except (subprocess.SubprocessError, OSError) as exc:
                results["rapidocr"] = {"error": f"ocrmypdf-rapidocr did not install: {exc}"}
        for engine, extra, python in engines:
            per_file = {}
            for name, (source, reference, pages) in files.items():
                out = work / f"{engine}-{name}.pdf"
                seconds = run(extra, source, out, args.jobs, python)
                per_file[name] = {
                    "pages": pages,
                    "seconds": round(seconds, 2),
                    "seconds_per_page": round(seconds / pages, 3),
                    "word_recall": round(word_recall(reference, pdf_text(out)), 4),
                }
            total_pages = sum(f["pages"] for f in per_file.values())
            results[engine] = {
                "files": per_file,
                "seconds_per_page": round(sum(f["seconds"] for f in per_file.values()) / total_pages, 3),
                "word_recall": round(sum(f["word_recall"] * f["pages"] for f in per_file.values()) / total_pages, 4),
            }
    for other in ("tesseract", "rapidocr"):
        if "seconds_per_page" in results.get(other, {}):
            results[f"speedup_dsocr_vs_{other}"] = round(
                results[other]["seconds_per_page"] / results["dsocr"]["seconds_per_page"], 2
            )
    results["settings"] = {"pages": args.pages, "jobs": args.jobs, "device": args.device}
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'engine':<10} {'file':<10} {'pages':>5} {'s/page':>8} {'recall':>7}")
    for engine in ("tesseract", "dsocr", "rapidocr"):
        for name, f in results.get(engine, {}).get("files", {}).items():
            print(f"{engine:<10} {name:<10} {f['pages']:>5} {f['seconds_per_page']:>8.2f} {f['word_recall']:>7.3f}")
    print({k: v for k, v in results.items() if k.startswith("speedup")})


if __name__ == "__main__":
    main()
