"""A read page and its layout as one answer: lines in the regions' reading order, ``regions``,
``figures`` and the text of the prompt type (markdown for ``document``, paragraphs for ``free``,
lines for ``ocr``). Region and figure shapes: ``supervisor/documents/results.py``, ``engine/figures.py``.

Everything is worked out on the page turned upright (a figure is cropped upright too); boxes are
given back in the uploaded image's pixels, like the lines'.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from engine.figures import crop_figure, figure_id

from . import table
from .layout_net import LayoutNet
from .markdown import block_markdown, free_text, join_lines
from .orientation import from_upright, to_upright
from .pipeline import UNDO_TURN, Line, Page
from .regions import Block, Rect, blocks, rect_of


def _image_box(rect: Rect, rotation: int, width: int, height: int) -> list[int]:
    """An upright-page rect in the uploaded image's pixels, as [x1, y1, x2, y2]."""
    quad = np.array([[rect[0], rect[1]], [rect[2], rect[1]], [rect[2], rect[3]], [rect[0], rect[3]]])
    if rotation:
        quad = from_upright(quad, rotation, width, height)
    return [int(round(v)) for v in (*quad.min(axis=0), *quad.max(axis=0))]


def lines_text(found: list[Block], texts: list[str]) -> str:
    """One line per row, a blank line between blocks (``ocr``'s text)."""
    return "\n\n".join("\n".join(texts[i] for i in b.lines) for b in found if b.lines)


def read_document(page: Page, image_rgb: np.ndarray, net: LayoutNet, prompt_type: str) -> dict[str, Any]:
    """``lines`` (reordered, ``block`` = region index), ``regions``, ``figures`` and ``text``."""
    height, width = image_rgb.shape[:2]
    rotation = page.rotation
    upright = cv2.rotate(image_rgb, UNDO_TURN[rotation]) if rotation else image_rgb
    lines = page.lines
    rects = [rect_of(to_upright(line.box, rotation, width, height)) for line in lines]
    texts = [line.text for line in lines]
    line_blocks = [line.block for line in lines]
    found = blocks(net.regions(upright), rects, texts, line_blocks, upright.shape[:2])

    new_index = {old: new for new, old in enumerate(i for b in found for i in b.lines)}
    ordered: list[Line] = []
    regions: list[dict[str, Any]] = []
    figures: list[dict[str, Any]] = []
    figure_of: dict[int, int] = {}  # block -> its figure's index
    for number, block in enumerate(found):
        for i in block.lines:
            line = lines[i]
            ordered.append(Line(line.text, line.box, line.score, number, line.words))
        region: dict[str, Any] = {
            "type": block.type,
            "box": _image_box(block.rect, rotation, width, height),
            "score": round(block.score, 4),
            "text": join_lines([texts[i] for i in block.lines]),
            "lines": [new_index[i] for i in block.lines],
        }
        if block.level is not None:  # the size lets a PDF's pages agree on levels (supervisor)
            region["level"], region["size"] = block.level, round(block.size, 3)
        if block.table is not None:
            region["html"] = table.html(block.table)
            region["cells"] = block.table.matrix()
        if block.type == "figure":
            caption = found[block.caption] if block.caption is not None else None
            words = join_lines([texts[i] for i in caption.lines]) if caption else None
            figure_of[number] = len(figures)
            crop = crop_figure(upright, block.rect, len(figures), words)
            crop["box"] = region["box"]  # in the uploaded image's pixels, like every box
            region["figure"] = figure_id(len(figures))
            figures.append(crop)
        regions.append(region)

    if prompt_type == "document":
        parts = [block_markdown(b, texts, line_blocks, figure_of.get(k)) for k, b in enumerate(found)]
        text = "\n\n".join(p for p in parts if p)
    elif prompt_type == "free":
        text = free_text(found, texts, line_blocks)
    else:
        text = lines_text(found, texts)
    return {"lines": ordered, "regions": regions, "figures": figures, "text": text}
