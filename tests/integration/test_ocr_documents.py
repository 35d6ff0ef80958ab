"""``output=hocr|alto|pdf`` on ``/ocr`` and ``/ocr-pdf`` against a real server (ppocr), checked with
third-party readers: OCRmyPDF's hOCR parser, lxml with the ALTO 4.4 schema, poppler's pdftotext."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pypdfium2 as pdfium
import pytest
from lxml import etree

from tests.integration.server import render_text, running_server
from tests.pdfs import scanned_pdf

PAGES = [["Chapter one begins here"], ["The second page", "has two lines"]]
ALTO_NS = "{http://www.loc.gov/standards/alto/ns-v4#}"
# The official schema is not vendored (no package registry ships it; see tests/data/README.md):
# put alto-4-4.xsd (and the xlink.xsd it imports) in this folder, or name it in DSOCR_ALTO_XSD
ALTO_XSD = Path(os.environ.get("DSOCR_ALTO_XSD", Path(__file__).parents[2] / ".cache" / "alto" / "alto-4-4.xsd"))


@pytest.fixture(scope="module")
def server():
    with running_server() as srv:
        yield srv


async def post(url: str, route: str, data: bytes, filename: str, **fields: str) -> tuple[int, str, bytes]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename=filename)
    async with aiohttp.ClientSession() as s, s.post(f"{url}{route}", data=form) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_hocr_parses_with_ocrmypdfs_parser(server, tmp_path: Path) -> None:
    from ocrmypdf.hocrtransform import HocrParser

    status, kind, body = await post(server.url, "/ocr", render_text(), "page.png", output="hocr")
    assert status == 200 and kind.startswith("text/html"), body[:300]
    (tmp_path / "page.hocr").write_bytes(body)
    page = HocrParser(tmp_path / "page.hocr").parse()
    lines = [line for par in page.children for line in par.children]
    assert [" ".join(w.text for w in line.children) for line in lines] == [
        "Invoice 2041 total 385.20",
        "Shipped to Berlin",
    ]
    words = [w for line in lines for w in line.children]
    assert all(0.5 <= w.confidence <= 1.0 for w in words)
    # words follow each other along their line, inside it
    for line in lines:
        rights = [w.bbox.right for w in line.children]
        lefts = [w.bbox.left for w in line.children]
        assert all(r <= left for r, left in zip(rights, lefts[1:])), line
        assert line.bbox.left <= lefts[0] and rights[-1] <= line.bbox.right


def _alto_schema() -> etree.XMLSchema | None:
    if not ALTO_XSD.is_file():
        return None

    class Local(etree.Resolver):
        def resolve(self, url, public_id, context):
            return self.resolve_filename(str(ALTO_XSD.parent / url.rsplit("/", 1)[-1]), context)

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Local())
    return etree.XMLSchema(etree.parse(str(ALTO_XSD), parser))


async def test_alto_of_a_pdf_has_its_pages_lines_and_words(server) -> None:
    pdf = scanned_pdf([render_text(lines) for lines in PAGES])
    status, kind, body = await post(server.url, "/ocr", pdf, "doc.pdf", output="alto")
    assert status == 200 and kind.startswith("application/xml"), body[:300]
    doc = etree.fromstring(body)
    assert doc.tag == f"{ALTO_NS}alto" and doc.find(f"{ALTO_NS}Description/{ALTO_NS}MeasurementUnit").text == "pixel"
    pages = doc.findall(f"{ALTO_NS}Layout/{ALTO_NS}Page")
    assert [p.get("PHYSICAL_IMG_NR") for p in pages] == ["1", "2"]
    texts = [
        [" ".join(s.get("CONTENT") for s in line.iter(f"{ALTO_NS}String")) for line in page.iter(f"{ALTO_NS}TextLine")]
        for page in pages
    ]
    assert texts == PAGES
    for string in doc.iter(f"{ALTO_NS}String"):
        assert int(string.get("WIDTH")) > 0 and 0 <= float(string.get("WC")) <= 1
    schema = _alto_schema()
    if schema is not None:  # the official schema, where the machine has it
        assert schema.validate(doc), schema.error_log


def _rotated(pdf: bytes, rotate: int) -> bytes:
    """``pdf`` with every page's /Rotate set (shown turned clockwise; its text then reads sideways)."""
    if not rotate:
        return pdf
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as doc:
        for page in doc.pages:
            page.obj.Rotate = rotate
        out = io.BytesIO()
        doc.save(out)
    return out.getvalue()


def _render(pdf: bytes, dpi: int = 72) -> list[np.ndarray]:
    doc = pdfium.PdfDocument(pdf)
    try:
        return [doc[i].render(scale=dpi / 72).to_numpy().copy() for i in range(len(doc))]
    finally:
        doc.close()


def _pdftotext_words(pdf: bytes, tmp_path: Path, rotate: int = 0) -> list[list[tuple[str, float, float, float, float]]]:
    """Each page's words with their boxes, as fractions of the page as shown, from ``pdftotext
    -bbox`` (which gives a turned page's words as shown, but its size unturned)."""
    path = tmp_path / "out.pdf"
    path.write_bytes(pdf)
    html = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, check=True, text=True).stdout
    pages = []
    for page in re.findall(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', html, re.S):
        w, h = float(page[0]), float(page[1])
        w, h = (h, w) if rotate in (90, 270) else (w, h)
        words = re.findall(r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)<', page[2])
        pages.append([(t, float(a) / w, float(b) / h, float(c) / w, float(d) / h) for a, b, c, d, t in words])
    return pages


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is installed by make test")
@pytest.mark.parametrize("rotate", [0, 90])
async def test_searchable_pdf_keeps_the_pages_and_puts_the_text_on_its_lines(server, tmp_path: Path, rotate) -> None:
    pdf = _rotated(scanned_pdf([render_text(lines) for lines in PAGES]), rotate)
    status, kind, body = await post(server.url, "/ocr-pdf", pdf, "doc.pdf", output="pdf")
    assert status == 200 and kind == "application/pdf", body[:300]
    before, after = _render(pdf), _render(body)
    assert len(after) == len(before) == 2
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # the text layer shows nothing
    status, _, raw = await post(server.url, "/ocr", pdf, "doc.pdf")
    answer = orjson.loads(raw)
    for page, words in zip(answer["pages"], _pdftotext_words(body, tmp_path, rotate)):
        w, h = page["image_dims"]["w"], page["image_dims"]["h"]
        assert " ".join(t for t, *_ in words) == " ".join(line["text"] for line in page["lines"])
        for line in page["lines"]:
            xs, ys = [p[0] / w for p in line["box"]], [p[1] / h for p in line["box"]]
            # the words whose centres fall in the line's box (2% wider) are the line's, and span it
            inside = [wd for wd in words if min(xs) - 0.02 <= (wd[1] + wd[3]) / 2 <= max(xs) + 0.02
                      and min(ys) - 0.02 <= (wd[2] + wd[4]) / 2 <= max(ys) + 0.02]  # fmt: skip
            assert [wd[0] for wd in inside] == line["text"].split(), (line, words)
            assert (
                abs(min(wd[1] for wd in inside) - min(xs)) <= 0.02
                and abs(max(wd[3] for wd in inside) - max(xs)) <= 0.02
            )
            assert (
                abs(min(wd[2] for wd in inside) - min(ys)) <= 0.02
                and abs(max(wd[4] for wd in inside) - max(ys)) <= 0.02
            )


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is installed by make test")
async def test_an_image_becomes_a_one_page_searchable_pdf(server, tmp_path: Path) -> None:
    image = render_text()
    status, kind, body = await post(server.url, "/ocr", image, "page.png", output="pdf")
    assert status == 200 and kind == "application/pdf"
    (page,) = _render(body)
    from PIL import Image

    original = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    assert page.shape[:2] == original.shape[:2] and np.array_equal(page[:, :, :3], original)  # 72 dpi: 1 px = 1 pt
    words = _pdftotext_words(body, tmp_path)
    assert [" ".join(t for t, *_ in p) for p in words] == ["Invoice 2041 total 385.20 Shipped to Berlin"]


async def test_an_unknown_output_is_refused_before_reading(server) -> None:
    status, kind, body = await post(server.url, "/ocr", render_text(), "page.png", output="docx")
    assert status == 400 and b"outputs: json, hocr, alto, pdf" in body


def test_cli_writes_hocr_and_a_searchable_pdf(server, tmp_path: Path) -> None:
    (tmp_path / "page.png").write_bytes(render_text())
    run = [sys.executable, "-m", "supervisor.cli", "ocr", "--url", server.url, str(tmp_path / "page.png")]
    hocr = subprocess.run([*run, "--format", "hocr"], capture_output=True, check=True, timeout=60).stdout
    assert b'class="ocrx_word"' in hocr and b">Berlin</span>" in hocr
    done = subprocess.run(
        [*run, "--format", "pdf", "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "page.pdf")
    assert (tmp_path / "out" / "page.pdf").read_bytes().startswith(b"%PDF-")
