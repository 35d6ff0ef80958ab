"""Text spotting answers (lines of text, each with its place) -> dsocr's ``lines`` and ``boxes``.

PaddleOCR-VL-1.5 (``Spotting:``) writes each line as
``<|TEXT_START|>text<|TEXT_END|><|LOC_BEGIN|>`` eight ``<|LOC_n|>`` (four corners) ``<|LOC_END|>``,
or, without the delimiters, text then eight bare ``<|LOC_n|>`` (upstream's
``post_process_for_spotting`` reads both); HunyuanOCR (its spotting prompt) writes
``<ref>text</ref><quad>(x1,y1),(x2,y2)</quad>`` (its report's examples; full-width brackets and
commas in the coordinates read as ASCII ones, as upstream's clients do). Both normalise
coordinates to 0-1000 over the whole image. What cannot be read as a line is kept in ``text`` and
left out of ``lines``.
"""

from __future__ import annotations

import re
from typing import Any

from .vlm.boxes import scale

COORD_MAX = 1000
PADDLE_RUN = re.compile(
    r"<\|TEXT_START\|>(?P<text>.*?)<\|TEXT_END\|>\s*<\|LOC_BEGIN\|>(?P<locs>.*?)<\|LOC_END\|>", re.DOTALL
)
PADDLE_BARE = re.compile(r"(?P<text>.*?)(?P<locs>(?:<\|LOC_\d+\|>\s*){8})", re.DOTALL)
_PAIR = "[(\uff08]\\s*(?P<{0}>\\d+)\\s*[,\uff0c]\\s*(?P<{1}>\\d+)\\s*[)\uff09]"  # ASCII or full-width
HUNYUAN_LINE = re.compile(
    rf"<ref>(?P<text>.*?)</ref>\s*<quad>\s*{_PAIR.format('x1', 'y1')}\s*[,\uff0c]\s*{_PAIR.format('x2', 'y2')}\s*</quad>",
    re.DOTALL,
)
LOC = re.compile(r"<\|LOC_(\d+)\|>")


def _quad(points: list[tuple[float, float]], width: int, height: int) -> list[list[int]]:
    return [[scale(x, width, COORD_MAX), scale(y, height, COORD_MAX)] for x, y in points]


def _line(text: str, quad: list[list[int]]) -> dict[str, Any]:
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return {"text": text, "box": quad, "score": 1.0, "bbox": [min(xs), min(ys), max(xs), max(ys)]}


def _result(lines: list[dict[str, Any]], raw: str) -> dict[str, Any]:
    boxes = [{"label": "text", "box": line.pop("bbox")} for line in lines]
    text = "\n".join(line["text"] for line in lines) if lines else raw.strip()
    return {"text": text, "lines": lines, "boxes": boxes, "figures": []}


def paddle_spotting(raw: str, width: int, height: int) -> dict[str, Any]:
    lines = []
    runs = list(PADDLE_RUN.finditer(raw)) or list(PADDLE_BARE.finditer(raw))
    for match in runs:
        numbers = [float(n) for n in LOC.findall(match["locs"])][:8]
        text = match["text"].strip()
        if text and len(numbers) == 8:
            lines.append(_line(text, _quad(list(zip(numbers[0::2], numbers[1::2])), width, height)))
    return _result(lines, raw)


def hunyuan_spotting(raw: str, width: int, height: int) -> dict[str, Any]:
    lines = []
    for match in HUNYUAN_LINE.finditer(raw):
        x1, y1, x2, y2 = (float(match[k]) for k in ("x1", "y1", "x2", "y2"))
        text = match["text"].strip()
        if text:
            lines.append(_line(text, _quad([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], width, height)))
    return _result(lines, raw)
