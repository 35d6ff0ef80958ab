"""Searchable PDFs: the uploaded PDF with an invisible text layer added to each page, or an image
made into a one-page PDF with its text layer.

Written with pikepdf (MPL-2.0, over qpdf, Apache-2.0; what OCRmyPDF itself grafts its text layers
with): the original page content streams are kept byte for byte and wrapped in ``q``/``Q``, and
one more stream is appended with the words in text render mode 3 (invisible), so the pages render
exactly as before. fpdf2 (LGPL-3.0) and reportlab would have rebuilt pages; pypdfium2 regenerates a
page's content when an object is added.

The words are set in a glyphless font (every character one empty glyph half an em wide), each word
scaled horizontally to its box, so a viewer's selection and ``pdftotext -bbox`` fall on the ink:
Tesseract's own approach, with its font (``tessdata/pdf.ttf``, 572 bytes, Apache-2.0,
Copyright 2006-2022 Google Inc.). Characters are UTF-16 code units as CIDs, mapped back by an
identity ToUnicode map, so every script the models read is searchable.
"""

from __future__ import annotations

import base64
import io
import math
import zlib

import pikepdf
from PIL import Image, ImageOps

from supervisor.documents.text_layout import TextPage, Word

GLYPHLESS_TTF = base64.b64decode(
    "AAEAAAAKAIAAAwAgT1MvMlbeyJQAAAEoAAAAYGNtYXAACgA0AAABkAAAAB5nbHlmFSJBJAAAAbgAAAAYaGVhZAt48WUAAACsAAAANmhoZWEMAgQCAAAA5AAAACRobXR4BAAAAAAAAYgAAAAIbG9jYQAMAAAAAAGwAAAABm1heHAABAAFAAABCAAAACBuYW1l8usW2gAAAdAAAABLcG9zdAABAAEAAAIcAAAAIAABAAAAAQAAsJRxEF8PPPUEBwgAAAAAAM+a/G4AAAAA1MOn8gAAAAAEAAgAAAAAEAACAAAAAAAAAAEAAAgA//8AAAQAAAAAAAQAAAEAAAAAAAAAAAAAAAAAAAACAAEAAAACAAQAAQAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAwAAAZAABQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAUAAQABAAAAAAAAAAAAAAAAAAAAAAAAAAAAR09PRwBAAAAAAAAB//8AAAABAAGAAAAAAAAAAAAAAAAAAAABAAAAAAAABAAAAAAAAAIAAQAAAAAAFAADAAAAAAAUAAYACgAAAAAAAAAAAAAAAAAMAAAAAQAAAAAEAAgAAAMAADEhESEEAPwACAAAAAADACoAAAADAAAABQAWAAAAAQAAAAAABQALABYAAwABBAkABQAWAAAAVgBlAHIAcwBpAG8AbgAgADEALgAwVmVyc2lvbiAxLjAAAAEAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAA="
)
CHAR_WIDTH = 0.5  # of the font size: the glyphless font's one advance (its /DW 500)
TO_UNICODE = b"""/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Adobe-Identity-UCS def
/CMapType 2 def
1 begincodespacerange
<0000> <FFFF>
endcodespacerange
1 beginbfrange
<0000> <FFFF> <0000>
endbfrange
endcmap
CMapName currentdict /CMap defineresource pop
end
end
"""
# corners of a word's quad (clockwise from the image's top-left) that are the upright text's
# baseline start, baseline end and top-left, for a page the engine found turned clockwise by the key
_CORNERS = {0: (3, 2, 0), 90: (0, 3, 1), 180: (1, 0, 2), 270: (2, 1, 3)}
FONT_NAME = "/DsocrGlyphless"


def _font(pdf: pikepdf.Pdf) -> pikepdf.Object:
    font_file = pdf.make_stream(GLYPHLESS_TTF)
    descriptor = pikepdf.Dictionary(
        Type=pikepdf.Name.FontDescriptor, FontName=pikepdf.Name.GlyphLessFont, Flags=5,
        FontBBox=[0, 0, 500, 1000], ItalicAngle=0, Ascent=1000, Descent=-1, CapHeight=1000, StemV=80,
        FontFile2=font_file,
    )  # fmt: skip
    # every CID shows glyph 1 (the font's one empty glyph)
    cid_to_gid = pdf.make_stream(zlib.compress(b"\x00\x01" * 65536), Filter=pikepdf.Name.FlateDecode)
    cid_font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.CIDFontType2, BaseFont=pikepdf.Name.GlyphLessFont,
        CIDSystemInfo=pikepdf.Dictionary(Registry="Adobe", Ordering="Identity", Supplement=0),
        FontDescriptor=descriptor, DW=500, CIDToGIDMap=cid_to_gid,
    )  # fmt: skip
    return pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type0, BaseFont=pikepdf.Name.GlyphLessFont,
            Encoding=pikepdf.Name("/Identity-H"), DescendantFonts=[pdf.make_indirect(cid_font)],
            ToUnicode=pdf.make_stream(TO_UNICODE),
        )
    )  # fmt: skip


def _hex(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def word_ops(word: Word, text: str, rotation: int, to_pdf) -> str:
    """Operators that set text invisibly over the word's quad (page pixels; to_pdf maps
    a pixel to the drawing space)."""
    start, end, top = (to_pdf(*word.quad[i]) for i in _CORNERS.get(rotation, _CORNERS[0]))
    dx, dy = end[0] - start[0], end[1] - start[1]
    width = math.hypot(dx, dy)
    height = math.hypot(top[0] - start[0], top[1] - start[1])
    if width < 0.5 or height < 0.5 or not text:
        return ""
    ux, uy = dx / width, dy / width
    # the word itself (not its trailing space) spans the box
    stretch = 100 * width / (len(word.text.encode("utf-16-be")) // 2 * CHAR_WIDTH * height)
    return (
        f"{_num(ux)} {_num(uy)} {_num(-uy)} {_num(ux)} {_num(start[0])} {_num(start[1])} Tm "
        f"{FONT_NAME} {_num(height)} Tf {_num(stretch)} Tz <{_hex(text)}> Tj\n"
    )


def text_layer(page: TextPage, to_pdf) -> bytes:
    """The content stream of a page's invisible words, each followed by a space within its line
    (so text extraction keeps the words apart)."""
    ops = ["BT 3 Tr\n"]
    for line in page.lines:
        for index, word in enumerate(line.words):
            text = word.text + (" " if index < len(line.words) - 1 else "")
            ops.append(word_ops(word, text, page.rotation, to_pdf))
    ops.append("ET\n")
    return "".join(ops).encode("ascii")


def _inherited(page: pikepdf.Dictionary, key: str):
    node = page
    while node is not None:
        if key in node:
            return node[key]
        node = node.get("/Parent")
    return None


def _pixel_mapping(page: pikepdf.Page, width_px: int, height_px: int):
    """Pixel (x, y) of the page as rendered (pdfium: its crop box, turned by its /Rotate) -> the
    page's user space."""
    x0, y0, x1, y1 = (float(v) for v in page.cropbox)
    mx0, my0, mx1, my1 = (float(v) for v in page.mediabox)  # pdfium shows the crop box within the media box
    x0, y0, x1, y1 = max(x0, mx0), max(y0, my0), min(x1, mx1), min(y1, my1)
    w, h = x1 - x0, y1 - y0
    rotate = int(_inherited(page.obj, "/Rotate") or 0) % 360
    shown_w, shown_h = (h, w) if rotate in (90, 270) else (w, h)
    sx, sy = shown_w / width_px, shown_h / height_px

    def to_pdf(px: float, py: float) -> tuple[float, float]:
        u, v = px * sx, py * sy  # from the shown page's top-left, in points
        if rotate == 90:
            return x0 + v, y0 + u
        if rotate == 180:
            return x1 - u, y0 + v
        if rotate == 270:
            return x1 - v, y1 - u
        return x0 + u, y1 - v

    return to_pdf


def add_text_layer(data: bytes, pages: list[TextPage]) -> bytes:
    """``data`` (a PDF) with each read page's words added invisibly; pages not read are unchanged."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        font = _font(pdf)
        for text_page in pages:
            page = pdf.pages[text_page.number - 1]
            to_pdf = _pixel_mapping(page, text_page.width, text_page.height)
            layer = text_layer(text_page, to_pdf)
            resources = page.obj.get("/Resources")
            if resources is None:
                resources = _inherited(page.obj, "/Resources") or pikepdf.Dictionary()
                page.obj.Resources = resources = pdf.make_indirect(pikepdf.Dictionary(resources))
            fonts = resources.get("/Font")
            if fonts is None:
                resources.Font = fonts = pikepdf.Dictionary()
            fonts[FONT_NAME] = font
            # the page's own streams stay as they are: q/Q keeps their graphics state from the text's
            page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
            page.contents_add(pdf.make_stream(b"\nQ\n" + layer))
        out = io.BytesIO()
        pdf.save(out)
    return out.getvalue()


def image_pdf(image_data: bytes) -> bytes:
    """A one-page PDF showing the image (as the engine read it: EXIF orientation applied), one
    pixel per 1/dpi inch (72 when the file has no resolution). JPEGs are embedded as they are."""
    with Image.open(io.BytesIO(image_data)) as opened:
        # a JPEG goes in as it is unless it must be turned or its colours are not plain RGB/grey
        raw_jpeg = opened.format == "JPEG" and opened.getexif().get(0x0112, 1) in (0, 1) and opened.mode in ("L", "RGB")
        dpi = opened.info.get("dpi") or (72, 72)
        upright = ImageOps.exif_transpose(opened)
        mode = "L" if upright.mode in ("1", "L", "LA") else "RGB"
        image = upright.convert(mode)
    xdpi, ydpi = (float(d) if d and d > 0 else 72.0 for d in dpi[:2])
    width, height = image.size
    w_pt, h_pt = width * 72 / xdpi, height * 72 / ydpi
    # a PDF page is 3 to 14,400 units a side: a tiny or a huge image is shown larger or smaller
    scale = min(max(1.0, 3 / min(w_pt, h_pt)), 14400 / max(w_pt, h_pt))
    w_pt, h_pt = (min(max(side * scale, 3.0), 14400.0) for side in (w_pt, h_pt))
    pdf = pikepdf.new()
    color = pikepdf.Name.DeviceGray if mode == "L" else pikepdf.Name.DeviceRGB
    if raw_jpeg:
        xobject = pdf.make_stream(image_data, Filter=pikepdf.Name.DCTDecode)
    else:
        xobject = pdf.make_stream(zlib.compress(image.tobytes()), Filter=pikepdf.Name.FlateDecode)
    xobject.Type, xobject.Subtype = pikepdf.Name.XObject, pikepdf.Name.Image
    xobject.Width, xobject.Height, xobject.ColorSpace, xobject.BitsPerComponent = width, height, color, 8
    page = pdf.add_blank_page(page_size=(w_pt, h_pt))
    page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=xobject))
    page.obj.Contents = pdf.make_stream(f"q {_num(w_pt)} 0 0 {_num(h_pt)} 0 0 cm /Im0 Do Q\n".encode("ascii"))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()
