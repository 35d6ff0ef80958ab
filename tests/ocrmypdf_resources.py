"""OCRmyPDF's own test resources (``tests/resources`` of its sdist), fetched once with pip into
``.cache/ocrmypdf`` and reused; and the word recall the OCRmyPDF tests and bench measure."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "17.13.0"
CACHE = Path(__file__).parents[1] / ".cache" / "ocrmypdf"


def resources() -> Path:
    """The folder of OCRmyPDF's test files (linn.pdf, linn.txt, c03-29.pdf, ...)."""
    folder = CACHE / f"ocrmypdf-{VERSION}" / "tests" / "resources"
    if (folder / "linn.txt").is_file():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"ocrmypdf-{VERSION}.tar.gz"
    if not sdist.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             "-d", str(CACHE), f"ocrmypdf=={VERSION}"],
            check=True, timeout=600,
        )  # fmt: skip
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/resources/" in m.name and m.isfile()]
        tar.extractall(CACHE, members=members, filter="data")
    return folder


def words(text: str) -> collections.Counter[str]:
    return collections.Counter(re.findall(r"[a-z0-9]+", text.lower()))


def word_recall(reference: str, found: str) -> float:
    """The share of the reference's words (with their counts) that ``found`` has."""
    ref, got = words(reference), words(found)
    return sum(min(n, got[w]) for w, n in ref.items()) / max(1, sum(ref.values()))


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
