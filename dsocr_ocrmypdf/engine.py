"""The ``OcrEngine`` OCRmyPDF calls in its workers: one ``/ocr`` request per page image."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ocrmypdf.hocrtransform import Baseline, BoundingBox, OcrClass, OcrElement
from ocrmypdf.pluginspec import OcrEngine, OrientationConfidence
from PIL import Image

from dsocr_ocrmypdf.server import DsocrServer
from supervisor.documents.hocr import hocr_document
from supervisor.documents.text_layout import TextLine, TextPage, body_pages

# What each model reads, as OCRmyPDF's (Tesseract's) language codes: ppocr's PP-OCRv6 reads
# Chinese (simplified and traditional), English and Japanese; deepseek-ocr-2 reads the rest too.
LANGUAGES = {
    "ppocr": {"eng", "chi_sim", "chi_tra", "jpn"},
    "deepseek-ocr-2": {"eng", "chi_sim", "chi_tra", "jpn", "kor", "deu", "fra", "spa", "ita", "por", "nld", "rus"},
}
SURE = 15.0  # OCRmyPDF's scale: 15 is very confident (--rotate-pages-threshold defaults to 14)


def _version() -> str:
    try:
        return metadata.version("dsocr")
    except metadata.PackageNotFoundError:
        return "0"


def _box(bbox: tuple[int, int, int, int]) -> BoundingBox:
    return BoundingBox(left=bbox[0], top=bbox[1], right=bbox[2], bottom=bbox[3])


def _line(line: TextLine, rotation: int) -> OcrElement:
    (x3, y3), (x2, y2) = line.quad[3], line.quad[2]
    slope = (y2 - y3) / (x2 - x3) if rotation == 0 and abs(x2 - x3) > 1e-6 else 0.0
    words = [
        OcrElement(ocr_class=OcrClass.WORD, bbox=_box(w.bbox), text=w.text, confidence=w.score) for w in line.words
    ]
    return OcrElement(
        ocr_class=OcrClass.LINE,
        bbox=_box(line.bbox),
        baseline=Baseline(slope=slope, intercept=0.0) if rotation == 0 else None,
        # hOCR's textangle turns counter-clockwise; the page is turned clockwise by ``rotation``
        textangle=float((360 - rotation) % 360) if rotation else None,
        children=words,
    )


def page_tree(page: TextPage, dpi: float, page_number: int) -> OcrElement:
    """A page's blocks, lines and words as OCRmyPDF's element tree (page pixels)."""
    paragraphs = [
        OcrElement(
            ocr_class=OcrClass.PARAGRAPH,
            bbox=_box(
                (
                    min(x.bbox[0] for x in b),
                    min(x.bbox[1] for x in b),
                    max(x.bbox[2] for x in b),
                    max(x.bbox[3] for x in b),
                )
            ),
            children=[_line(line, page.rotation) for line in b],
        )
        for b in page.blocks()
    ]
    return OcrElement(
        ocr_class=OcrClass.PAGE,
        bbox=BoundingBox(left=0, top=0, right=page.width, bottom=page.height),
        dpi=dpi,
        page_number=page_number,
        children=paragraphs,
    )


def _read(input_file: Path, options) -> tuple[TextPage, str, float]:
    body = DsocrServer.from_options(options).ocr(Path(input_file))
    with Image.open(input_file) as image:
        width, height = image.size
        dpi = float((image.info.get("dpi") or (300, 300))[0]) or 300.0
    (page,) = body_pages(body)
    page.width, page.height = width, height  # the image OCRmyPDF gave, which the boxes are in
    return page, body.get("text", ""), dpi


class DsocrEngine(OcrEngine):
    @staticmethod
    def version() -> str:
        return _version()

    @staticmethod
    def creator_tag(options) -> str:
        model = options.dsocr.model if options is not None else None
        return f"dsocr {_version()}" + (f" ({model})" if model else "")

    def __str__(self) -> str:
        return f"dsocr {_version()}"

    @staticmethod
    def languages(options) -> set[str]:
        model = options.dsocr.model if options is not None else None
        return LANGUAGES.get(model or "ppocr", set())

    @staticmethod
    def get_orientation(input_file: Path, options) -> OrientationConfidence:
        """The clockwise turn of the page as the server read it (ppocr finds 0/90/180/270)."""
        page, _, _ = _read(input_file, options)
        return OrientationConfidence(angle=page.rotation, confidence=SURE if page.lines else 0.0)

    @staticmethod
    def get_deskew(input_file: Path, options) -> float:
        return 0.0

    @staticmethod
    def supports_generate_ocr() -> bool:
        return True

    @staticmethod
    def generate_ocr(input_file: Path, options, page_number: int = 0) -> tuple[OcrElement, str]:
        page, text, dpi = _read(input_file, options)
        return page_tree(page, dpi, page_number), text

    @staticmethod
    def generate_hocr(input_file: Path, output_hocr: Path, output_text: Path, options) -> None:
        page, text, _ = _read(input_file, options)
        Path(output_hocr).write_text(hocr_document([page], Path(input_file).name), encoding="utf-8")
        Path(output_text).write_text(text, encoding="utf-8")

    @staticmethod
    def generate_pdf(input_file: Path, output_pdf: Path, output_text: Path, options) -> None:
        raise NotImplementedError("dsocr gives OCRmyPDF its text: use --pdf-renderer fpdf2 (the default)")
