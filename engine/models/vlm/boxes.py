"""Grounding coordinates -> boxes in image pixels, for every model that writes them.

VLMs write boxes in a normalised space over the whole image: DeepSeek-OCR in 0-999 (upstream
scales with ``int(x / 999 * image_width)``, ``DeepSeek-OCR2-vllm/run_dpsk_ocr2_image.py``), the
Qwen-style models in 0-1000. ``coord_max`` names the space; a value outside it is clamped.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_GROUP = re.compile(r"\[([^\[\]]*)\]")


def scale(value: float, size: int, coord_max: int) -> int:
    """One coordinate of a ``coord_max`` space in pixels of a side of ``size``."""
    return int(min(max(value, 0), coord_max) / coord_max * size)


def scale_box(numbers: list[float], width: int, height: int, coord_max: int) -> list[int]:
    """``[x1, y1, x2, y2]`` in the normalised space -> pixels, corners ordered."""
    x1, y1, x2, y2 = numbers
    x1, x2 = sorted((scale(x1, width, coord_max), scale(x2, width, coord_max)))
    y1, y2 = sorted((scale(y1, height, coord_max), scale(y2, height, coord_max)))
    return [x1, y1, x2, y2]


def parse_boxes(det: str, width: int, height: int, coord_max: int = 999) -> list[list[int]]:
    """``[[x1, y1, x2, y2], ...]`` (or one bare group) -> pixel boxes; groups that are not 4 numbers are skipped."""
    groups = _GROUP.findall(det) or [det]
    boxes = []
    for group in groups:
        numbers = [float(n) for n in _NUMBER.findall(group)]
        if len(numbers) == 4:
            boxes.append(scale_box(numbers, width, height, coord_max))
    return boxes
