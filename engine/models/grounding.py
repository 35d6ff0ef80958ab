"""Grounding spans in DeepSeek-OCR output -> boxes in image pixels, and the text without them.

The model writes ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>``, coordinates in a
0-999 space over the whole image. Upstream scales them with ``int(x / 999 * image_width)``
(deepseek-ai/DeepSeek-OCR, ``DeepSeek-OCR-vllm/run_dpsk_ocr_image.py``, ``draw_bounding_boxes``);
so do we.

What happens to the label in ``text``:

- document mode (``keep_labels=False``): the label is a layout class (``title``, ``text``,
  ``table``, ``image``...) and the content follows the span, so the span goes entirely, as upstream
  does when it writes ``result.mmd``;
- other modes (``keep_labels=True``): the label *is* the content (OCR with grounding writes each
  line as a ref; ``find`` refs the searched term), so it stays as plain text.

Each box also becomes a ``lines`` entry (its label, or in document mode the text that follows the
span). Malformed output is tolerated: a ``<|det|>`` without its closing tag runs to the end, a
coordinate group that is not four numbers is skipped, stray tags are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

COORD_MAX = 999
# the DeepSeek tokenizer's end/padding tokens, which decoding keeps when special tokens are kept
END_TOKENS = ("<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜begin▁of▁sentence｜>", "</s>")
_SPAN = re.compile(r"<\|ref\|>(.*?)<\|/ref\|>\s*<\|det\|>(.*?)(?:<\|/det\|>|$)", re.DOTALL)
_DET_ONLY = re.compile(r"<\|det\|>(.*?)(?:<\|/det\|>|$)", re.DOTALL)
_TAGS = re.compile(r"<\|/?(?:ref|det|grounding)\|>")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_GROUP = re.compile(r"\[([^\[\]]*)\]")


@dataclass
class Grounded:
    text: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)


def strip_end_tokens(raw: str, extra: tuple[str, ...] = ()) -> str:
    for token in (*END_TOKENS, *extra):
        if token:
            raw = raw.replace(token, "")
    return raw


def _scale(value: float, size: int) -> int:
    return int(min(max(value, 0), COORD_MAX) / COORD_MAX * size)


def parse_boxes(det: str, width: int, height: int) -> list[list[int]]:
    """``[[x1, y1, x2, y2], ...]`` in 0-999 -> pixel boxes; groups that are not 4 numbers are skipped."""
    groups = _GROUP.findall(det) or [det]
    boxes = []
    for group in groups:
        numbers = [float(n) for n in _NUMBER.findall(group)]
        if len(numbers) != 4:
            continue
        x1, y1, x2, y2 = numbers
        x1, x2 = sorted((_scale(x1, width), _scale(x2, width)))
        y1, y2 = sorted((_scale(y1, height), _scale(y2, height)))
        boxes.append([x1, y1, x2, y2])
    return boxes


def parse_grounding(raw: str, width: int, height: int, keep_labels: bool = True) -> Grounded:
    """The text without grounding markup, its boxes and lines (see the module doc)."""
    raw = strip_end_tokens(raw)
    spans = list(_SPAN.finditer(raw))
    boxes: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    pieces: list[str] = []
    cursor = 0
    for i, span in enumerate(spans):
        label = _TAGS.sub("", span.group(1)).strip()
        pieces.append(raw[cursor : span.start()])
        if keep_labels:
            pieces.append(label)
        cursor = span.end()
        following = raw[cursor : spans[i + 1].start() if i + 1 < len(spans) else len(raw)]
        line_text = label if keep_labels else _TAGS.sub("", _DET_ONLY.sub("", following)).strip()
        for x1, y1, x2, y2 in parse_boxes(span.group(2), width, height):
            boxes.append({"label": label, "box": [x1, y1, x2, y2]})
            lines.append({"text": line_text, "box": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "score": None})
    pieces.append(raw[cursor:])
    text = _TAGS.sub("", _DET_ONLY.sub("", "".join(pieces)))
    return Grounded(text=text.strip(), boxes=boxes, lines=lines)
