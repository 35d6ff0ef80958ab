"""The engine's host memory after a 10-page PDF stays near one page's, not ten pages' worth."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pypdfium2 as pdfium
from PIL import Image

from engine.models.ppocr.memory import release_free_memory
from tests.engine.test_ppocr import ENGLISH, INVOICE, SERIF, render
from tests.helpers import ROOT, SegmentGuard, child_env, shm  # noqa: F401  (shm is a fixture)
from tests.pdfs import scanned_pdf

# A fresh engine runtime in its own process (this one holds other tests' models): load ppocr into
# a segment, read every page of the PDF, report resident memory (VmRSS) and its peak (VmHWM) in MB.
MEASURE = """
import json, sys
from engine.runtime import EngineRuntime
from ipc.weights import unlink_segment

def status(key):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key))

segment, pages = sys.argv[1], json.loads(sys.stdin.read())
runtime = EngineRuntime()
try:
    weights = runtime.load("ppocr", segment, "cpu", {})["weights_bytes"] / 2**20
    loaded = status("VmRSS:")
    rss = []
    for index, path in enumerate(pages):
        runtime.infer("ppocr", open(path, "rb").read(), {})
        if index == 0:
            first_peak = status("VmHWM:")
        rss.append(status("VmRSS:"))
finally:
    runtime.close()
    unlink_segment(segment)
print(json.dumps({"weights": weights, "loaded": loaded, "first_peak": first_peak, "rss": rss}))
"""


def ten_page_pdf() -> bytes:
    pages = []
    for lines in (INVOICE, ENGLISH, SERIF, INVOICE + ENGLISH, ENGLISH + SERIF):
        page = render(lines * 3, "DejaVuSans.ttf")
        buf = io.BytesIO()
        Image.fromarray(page).save(buf, "PNG")
        pages.append(buf.getvalue())
    return scanned_pdf(pages * 2)


def test_malloc_trim_is_there() -> None:
    assert release_free_memory()  # glibc: the engine runs on Linux


def test_rss_after_ten_pages_stays_within_the_bound(shm: SegmentGuard, tmp_path) -> None:
    paths = []
    document = pdfium.PdfDocument(ten_page_pdf())
    try:
        assert len(document) == 10
        for index in range(len(document)):  # rendered as the supervisor renders, at 144 dpi
            path = tmp_path / f"page-{index}.png"
            document[index].render(scale=144 / 72).to_pil().convert("RGB").save(path)
            paths.append(str(path))
    finally:
        document.close()
    segment = shm.name("memory")
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, segment],
        input=json.dumps(paths),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=child_env(),
        check=True,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    working_set = measured["first_peak"] - measured["loaded"]  # one page: its peak over the loaded engine
    bound = measured["loaded"] + 3 * measured["weights"] + working_set
    assert measured["rss"][-1] <= bound, measured
    # and it does not keep growing page after page
    assert measured["rss"][-1] <= measured["rss"][0] + measured["weights"], measured
