"""Document pages rendered with PIL, with what a reader should get from them.

Each page has a running header, a title, section headings, body text in one or two columns, a
table (ruled or not), a figure (a bar chart) with its caption, and a footer with the page number.
``bench/documents.py`` scores tools on them; ``tests/engine/test_ppocr_documents.py`` and
``tests/integration/test_document_layout.py`` read one. The texts are not the bench/peers.py
corpus: a held-out style, other words, other sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
WIDTH, HEIGHT = 1224, 1584  # US letter at 144 dpi

PARAGRAPHS = [
    "Rainfall across the northern catchment was twice the seasonal average in the first weeks of "
    "spring. The upper reservoirs filled early and the spillways opened on the fourth of April.",
    "Field teams walked the embankments every morning and logged seepage at eleven points. Two "
    "culverts under the railway were cleared after debris blocked them during the night.",
    "The board thanks the volunteers who staffed the pumping stations. Their reports arrived by "
    "telephone each evening and helped the duty engineer plan the next day of work.",
    "Repairs to the western levee will start in July. Contractors have been asked to finish the "
    "gravel toe before the autumn storms, when the river usually reaches its second peak.",
    "Residents may inspect the survey maps at the town library. Comments on the proposed "
    "floodwall should reach the secretary before the end of the consultation period.",
    "A summary of the gauge readings is printed below. Values are daily maxima in centimetres "
    "above the datum, rounded to the nearest whole number.",
]


@dataclass
class Truth:
    headings: list[tuple[str, int]] = field(default_factory=list)  # (text, level) in order
    body: list[str] = field(default_factory=list)  # every body line (headings too), reading order
    tables: list[list[list[str]]] = field(default_factory=list)  # rows of cells
    furniture: list[str] = field(default_factory=list)  # header, footer, page number: not body text
    figures: list[tuple[int, int, int, int]] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


def font(size: int, bold: bool = False, serif: bool = False) -> ImageFont.FreeTypeFont:
    name = ("DejaVuSerif" if serif else "DejaVuSans") + ("-Bold" if bold else "") + ".ttf"
    return ImageFont.truetype(str(FONT_DIR / name), size)


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and face.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


class _Page:
    def __init__(self, serif: bool) -> None:
        self.image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.serif = serif
        self.truth = Truth()

    def text(self, x: int, y: int, text: str, size: int, bold: bool = False, fill: str = "black") -> None:
        self.draw.text((x, y), text, font=font(size, bold, self.serif), fill=fill)

    def heading(self, y: int, text: str, level: int) -> int:
        size = {1: 46, 2: 32, 3: 26}[level]
        self.text(90, y, text, size, bold=True)
        self.truth.headings.append((text, level))
        self.truth.body.append(text)
        return y + int(size * 1.9)

    def paragraph(self, x: int, y: int, text: str, width: int, size: int = 22) -> int:
        for line in wrap(text, font(size, serif=self.serif), width):
            self.text(x, y, line, size)
            self.truth.body.append(line)
            y += int(size * 1.6)
        return y + size

    def table(self, y: int, rows: list[list[str]], ruled: bool, size: int = 22) -> int:
        widths = [330, 220, 220, 220]
        x0, row_h = 90, int(size * 2.2)
        for r, row in enumerate(rows):
            x = x0
            for c, cell in enumerate(row):
                self.text(x + 14, y + r * row_h + (row_h - size) // 2 - 2, cell, size, bold=r == 0)
                x += widths[c]
        if ruled:
            right, bottom = x0 + sum(widths[: len(rows[0])]), y + len(rows) * row_h
            for r in range(len(rows) + 1):
                self.draw.line((x0, y + r * row_h, right, y + r * row_h), fill="black", width=2)
            x = x0
            for c in range(len(rows[0]) + 1):
                self.draw.line((x, y, x, bottom), fill="black", width=2)
                x += widths[c] if c < len(rows[0]) else 0
        self.truth.tables.append(rows)
        return y + len(rows) * row_h + 40

    def figure(self, y: int, caption: str, height: int = 300) -> int:
        box = (200, y, 1024, y + height)
        self.draw.rectangle(box, outline="black", width=2)
        bars = [0.35, 0.6, 0.85, 0.5, 0.7, 0.4]
        for k, value in enumerate(bars):
            left = box[0] + 60 + k * 125
            self.draw.rectangle(
                (left, box[3] - 20 - int(value * (height - 60)), left + 70, box[3] - 20), fill=(70, 110, 170)
            )
        self.truth.figures.append(box)
        self.text(200, box[3] + 18, caption, 20)
        self.truth.captions.append(caption)
        return box[3] + 80

    def furniture(self, header: str, footer: str, number: int) -> None:
        self.text(90, 36, header, 18, fill=(90, 90, 90))
        self.draw.line((90, 66, WIDTH - 90, 66), fill=(150, 150, 150), width=1)
        self.text(90, HEIGHT - 70, footer, 18, fill=(90, 90, 90))
        self.text(WIDTH - 120, HEIGHT - 70, str(number), 18, fill=(90, 90, 90))
        self.truth.furniture += [header, footer, str(number)]


TABLE = [
    ["Station", "March", "April", "May"],
    ["Millford", "212", "245", "198"],
    ["Eastbridge", "187", "230", "176"],
    ["Harrow Lock", "164", "201", "155"],
]
TABLE_B = [
    ["Works", "Length", "Cost", "Start"],
    ["Western levee", "2.4 km", "1.8 M", "July"],
    ["Railway culverts", "0.3 km", "0.4 M", "August"],
    ["Floodwall", "1.1 km", "2.9 M", "October"],
]


def two_column_page(number: int = 1, ruled: bool = True, serif: bool = False) -> tuple[Image.Image, Truth]:
    """A title, a heading, two columns, a heading, a table, a figure with its caption."""
    page = _Page(serif)
    page.furniture("Valley Water Board - Annual Report 2024", "Printed for the spring meeting", number)
    y = page.heading(110, "Flood Season Review", 1)
    y = page.heading(y, "Background", 2)
    column, gutter = 492, 60
    left = y
    for text in PARAGRAPHS[:2]:
        left = page.paragraph(90, left, text, column)
    right = y
    for text in PARAGRAPHS[2:4]:
        right = page.paragraph(90 + column + gutter, right, text, column)
    y = max(left, right) + 10
    y = page.heading(y, "Gauge readings", 2)
    y = page.table(y, TABLE, ruled)
    page.figure(y, "Figure 1: Peak water level at each gauge in April")
    return page.image, page.truth


def single_column_page(number: int = 2, ruled: bool = False, serif: bool = True) -> tuple[Image.Image, Truth]:
    """Headings of two levels, paragraphs across the page, an unruled table, a figure."""
    page = _Page(serif)
    page.furniture("Valley Water Board - Annual Report 2024", "Printed for the spring meeting", number)
    y = page.heading(110, "Works Programme", 1)
    y = page.paragraph(90, y, PARAGRAPHS[4], 1040)
    y = page.heading(y, "Planned works", 2)
    y = page.table(y, TABLE_B, ruled)
    y = page.heading(y, "Consultation", 3)
    y = page.paragraph(90, y, PARAGRAPHS[5], 1040)
    page.figure(y, "Figure 2: Expected cost of the works by quarter", height=260)
    return page.image, page.truth


def pages() -> list[tuple[str, Image.Image, Truth]]:
    """The bench's set: each layout, ruled and unruled, sans and serif."""
    return [
        ("two-columns-ruled", *two_column_page(1, ruled=True, serif=False)),
        ("single-column-unruled", *single_column_page(2, ruled=False, serif=True)),
        ("two-columns-unruled-serif", *two_column_page(3, ruled=False, serif=True)),
        ("single-column-ruled", *single_column_page(4, ruled=True, serif=False)),
    ]
