"""OCRmyPDF with the dsocr plugin (``--plugin dsocr_ocrmypdf``) against a live dsocr server (ppocr),
beside OCRmyPDF with Tesseract on the same scans: the outputs open, pdftotext finds the text, and
dsocr's word recall is at least Tesseract's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from tests.integration.server import render_text, running_server
from tests.ocrmypdf_resources import pdf_text, resources, word_recall
from tests.pdfs import scanned_pdf

PAGES = [
    ["Quarterly report of the harbour office", "Ships arrived: 412, departed: 398", "Cargo handled 1.2 million tonnes"],
    [
        "Weather delayed seven crossings in March",
        "The new crane starts work in June",
        "Contact: office@harbour.example",
    ],
]


def ocrmypdf(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocrmypdf", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def server():
    with running_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "scan.pdf"
    path.write_bytes(scanned_pdf([render_text(lines) for lines in PAGES], dpi=150))
    return path


def plugin(server) -> list[str]:
    return ["--plugin", "dsocr_ocrmypdf", "--dsocr-url", server.url]


def test_recall_is_at_least_tesseracts_on_the_same_scan(server, scan: Path, tmp_path: Path) -> None:
    reference = "\n".join(line for page in PAGES for line in page)
    recall = {}
    for name, extra in (("tesseract", []), ("dsocr", plugin(server))):
        out = tmp_path / f"{name}.pdf"
        done = ocrmypdf(*extra, "--output-type", "pdf", str(scan), str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        with pikepdf.open(out) as pdf:
            assert len(pdf.pages) == len(PAGES)
            creator = str(pdf.docinfo.get("/Creator", ""))
        assert ("dsocr" in creator) == (name == "dsocr"), creator
        recall[name] = word_recall(reference, pdf_text(out))
    assert recall["dsocr"] >= recall["tesseract"] and recall["dsocr"] >= 0.95, recall


def test_ocrmypdfs_linn_page_as_pdfa(server, tmp_path: Path) -> None:
    """OCRmyPDF's own two-column scan (300 dpi, JBIG2), to PDF/A (Ghostscript), against its
    transcript, as well as Tesseract reads it (the transcript has Tesseract's readings: "0" for the
    bullets, "Footswit ch")."""
    folder = resources()
    reference = (folder / "linn.txt").read_text()
    recall = {}
    for name, extra in (("tesseract", []), ("dsocr", plugin(server))):
        out = tmp_path / f"linn-{name}.pdf"
        done = ocrmypdf(*extra, "--output-type", "pdfa", str(folder / "linn.pdf"), str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        with pikepdf.open(out) as pdf:
            assert len(pdf.pages) == 1 and "pdfaid" in str(pdf.open_metadata())
        recall[name] = word_recall(reference, pdf_text(out))
    assert recall["dsocr"] >= recall["tesseract"], recall


def test_skip_redo_and_force_on_a_pdf_that_has_text(server, scan: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.pdf"
    assert ocrmypdf(*plugin(server), "--output-type", "pdf", str(scan), str(first)).returncode == 0
    refused = ocrmypdf(*plugin(server), "--output-type", "pdf", str(first), str(tmp_path / "again.pdf"))
    assert refused.returncode == 6 and "already has text" in refused.stderr  # OCRmyPDF's own rule
    for flag in ("--skip-text", "--redo-ocr", "--force-ocr"):
        out = tmp_path / f"{flag[2:]}.pdf"
        done = ocrmypdf(*plugin(server), flag, "--output-type", "pdf", str(first), str(out))
        assert done.returncode == 0, (flag, done.stderr[-2000:])
        assert word_recall("\n".join(PAGES[1]), pdf_text(out)) >= 0.95, flag


def test_rotate_pages_turns_a_sideways_scan_upright(server, tmp_path: Path) -> None:
    import io

    image = Image.open(io.BytesIO(render_text(PAGES[0]))).rotate(90, expand=True)  # turned counter-clockwise
    buf = io.BytesIO()
    image.save(buf, "PNG")
    scan = tmp_path / "sideways.pdf"
    scan.write_bytes(scanned_pdf([buf.getvalue()], dpi=150))
    out = tmp_path / "upright.pdf"
    done = ocrmypdf(*plugin(server), "--rotate-pages", "--output-type", "pdf", str(scan), str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    with pikepdf.open(out) as pdf:
        assert int(pdf.pages[0].obj.get("/Rotate", 0)) % 360 == 90  # shown upright
    assert word_recall("\n".join(PAGES[0]), pdf_text(out)) >= 0.95


def test_options_dsocr_cannot_honour_are_refused(server, scan: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.pdf")
    for args, words in (
        (["--pdf-renderer", "sandwich"], "--pdf-renderer sandwich"),
        (["--deskew"], "--deskew"),
        (["--tesseract-pagesegmode", "6"], "--tesseract-pagesegmode"),
        (["-l", "ara"], "ara"),
        (["--dsocr-model", "nosuch"], "runs ppocr"),
    ):
        done = ocrmypdf(*plugin(server), *args, str(scan), out)
        assert done.returncode in (1, 2, 3), (args, done.returncode, done.stderr[-1500:])
        assert words in done.stderr, (args, done.stderr[-1500:])
    gone = ocrmypdf("--plugin", "dsocr_ocrmypdf", "--dsocr-url", "http://127.0.0.1:9", str(scan), out)
    assert gone.returncode == 3 and "no dsocr server answers at http://127.0.0.1:9" in gone.stderr
