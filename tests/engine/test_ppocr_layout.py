"""Reading order (blocks and columns) and small pages, on box lists and on rendered pages."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.models.ppocr import PPOCRAdapter
from engine.models.ppocr.layout import reading_order, rows
from engine.models.ppocr.model import PPOCRModule
from tests.engine.test_ppocr import FONTS, adapter, module, read, weights  # noqa: F401  (fixtures)

TITLE = "Quarterly report on river levels"
LEFT = [
    "The river rose slowly during",
    "the first week of March and",
    "reached its highest mark on",
    "the ninth day of the month.",
]
RIGHT = [
    "Farmers along the valley moved",
    "their cattle to higher fields",
    "while the town council opened",
    "two shelters near the station.",
]
SMALL = ["Invoice 2041", "Total due: 44.96 EUR", "Shipped to Berlin", "Paid by card"]
TINY = [
    "The quick brown fox jumps",
    "over the lazy dog. Pack my",
    "box with five dozen liquor",
    "jugs. Sphinx of black",
]


def box(x: int, y: int, w: int, h: int = 30) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])


def two_columns(size: int = 20) -> np.ndarray:
    """A title over two columns whose rows line up (the case a row-by-row order interleaves)."""
    font = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), size)
    step, gutter = int(size * 1.6), 2 * size
    column = max(int(font.getlength(line)) for line in LEFT + RIGHT)
    image = Image.new("RGB", (40 + 2 * column + gutter, 40 + step * (len(LEFT) + 2)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 20), TITLE, font=ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), int(size * 1.3)), fill="black")
    for index, (left, right) in enumerate(zip(LEFT, RIGHT)):
        y = 20 + step * (index + 2)
        draw.text((20, y), left, font=font, fill="black")
        draw.text((20 + column + gutter, y), right, font=font, fill="black")
    return np.asarray(image)


def small_page(lines: list[str], size: int, spacing: float) -> np.ndarray:
    font = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), size)
    image = Image.new("RGB", (240, 172), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((12, 12 + index * int(size * spacing)), line, font=font, fill="black")
    return np.asarray(image)


def test_single_column_keeps_the_row_order() -> None:
    boxes = [box(300, 52, 80), box(10, 100, 400), box(10, 48, 80), box(150, 50, 80), box(10, 140, 380)]
    order, blocks = reading_order(boxes)
    assert order == rows(boxes) == [2, 3, 0, 1, 4]
    assert blocks == [0] * 5


def test_columns_are_read_one_after_the_other() -> None:
    title = [box(10, 10, 600)]
    left = [box(10, 60 + 40 * i, 280) for i in range(4)]
    right = [box(330, 60 + 40 * i, 280) for i in range(4)]
    boxes = title + [b for pair in zip(left, right) for b in pair]  # detector order: row by row
    order, blocks = reading_order(boxes)
    assert order == [0, 1, 3, 5, 7, 2, 4, 6, 8]
    assert [blocks[i] for i in order] == [0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_a_table_of_short_cells_stays_row_by_row() -> None:
    cells = [box(x, 40 * row, 90) for row in range(4) for x in (10, 300)]
    order, blocks = reading_order(cells)
    assert order == list(range(8)) and set(blocks) == {0}


def test_a_wide_gap_starts_a_block() -> None:
    order, blocks = reading_order([box(10, 10, 300), box(10, 45, 300), box(10, 160, 300)])
    assert order == [0, 1, 2] and blocks == [0, 0, 1]


def test_two_column_page_comes_back_column_by_column(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    result = read(adapter, module, two_columns())
    assert result["text"] == "\n\n".join([TITLE, "\n".join(LEFT), "\n".join(RIGHT)])
    assert [line["block"] for line in result["lines"]] == [0] + [1] * len(LEFT) + [2] * len(RIGHT)


def test_small_page_reads_right(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    result = read(adapter, module, small_page(SMALL, 12, 2.2))
    assert result["text"] == "\n".join(SMALL)
    for line in result["lines"]:  # boxes in the uploaded 240 x 172 image, not the enlarged one
        assert all(0 <= x < 240 and 0 <= y < 172 for x, y in line["box"])


def test_tiny_text_on_a_small_page_keeps_its_line_order(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    # 7-pixel text: before enlarging, the detector merged lines and the second line came first
    lines = [line["text"] for line in read(adapter, module, small_page(TINY, 7, 1.5))["lines"]]
    assert [line.split()[0].lower() for line in lines] == [line.split()[0].lower() for line in TINY]
    words = " ".join(lines).split()
    assert sum(word in words for word in " ".join(TINY).split()) >= 0.8 * len(" ".join(TINY).split())
