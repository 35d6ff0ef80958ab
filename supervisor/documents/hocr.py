"""hOCR 1.2 documents from results: ``ocr_page`` > ``ocr_carea`` > ``ocr_par`` > ``ocr_line`` >
``ocrx_word``, each with its ``bbox`` in page pixels, words with ``x_wconf`` (0-100).

Written as XHTML (Tesseract's shape), which OCRmyPDF's own hOCR parser reads
(``ocrmypdf.hocrtransform.HocrParser``, the test's check). One ``ocr_carea`` with one ``ocr_par``
per reading-order block.
"""

from __future__ import annotations

from html import escape

from supervisor.documents.text_layout import TextLine, TextPage

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
<head>
<title>{title}</title>
<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
<meta name="ocr-system" content="dsocr"/>
<meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_par ocr_line ocrx_word"/>
</head>
<body>
"""


def _bbox(box: tuple[int, int, int, int]) -> str:
    return "bbox {} {} {} {}".format(*box)


def _union(lines: list[TextLine]) -> tuple[int, int, int, int]:
    boxes = [line.bbox for line in lines]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _baseline(line: TextLine) -> str:
    """hOCR's baseline: slope, and offset from the bbox's bottom-left, of the quad's bottom edge."""
    (x3, y3), (x2, y2) = line.quad[3], line.quad[2]
    slope = (y2 - y3) / (x2 - x3) if abs(x2 - x3) > 1e-6 else 0.0
    left, _, _, bottom = line.bbox
    intercept = round(y3 + slope * (left - x3) - bottom)
    return f"baseline {slope:.4f} {min(0, intercept)}"


def page_hocr(page: TextPage, filename: str = "") -> str:
    p = page.number
    image = escape('"' + (filename or f"page-{p}") + '"')  # Tesseract's: image "name"
    out = [
        f'<div class="ocr_page" id="page_{p}" title="image {image}; '
        f'{_bbox((0, 0, page.width, page.height))}; ppageno {p - 1}">'
    ]
    line_no = word_no = 0
    for b, block in enumerate(page.blocks(), start=1):
        box = _bbox(_union(block))
        out.append(f' <div class="ocr_carea" id="block_{p}_{b}" title="{box}">')
        out.append(f'  <p class="ocr_par" id="par_{p}_{b}" title="{box}">')
        for line in block:
            line_no += 1
            out.append(
                f'   <span class="ocr_line" id="line_{p}_{line_no}" title="{_bbox(line.bbox)}; {_baseline(line)}">'
            )
            for word in line.words:
                word_no += 1
                conf = f"; x_wconf {round(100 * word.score)}" if word.score is not None else ""
                out.append(
                    f'    <span class="ocrx_word" id="word_{p}_{word_no}" title="{_bbox(word.bbox)}{conf}">'
                    f"{escape(word.text)}</span>"
                )
            out.append("   </span>")
        out.append("  </p>")
        out.append(" </div>")
    out.append("</div>")
    return "\n".join(out)


def hocr_document(pages: list[TextPage], filename: str = "") -> str:
    body = "\n".join(page_hocr(page, filename) for page in pages)
    return HEAD.format(title=escape(filename)) + body + "\n</body>\n</html>\n"
