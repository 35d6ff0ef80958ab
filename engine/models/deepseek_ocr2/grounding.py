"""Grounding spans in DeepSeek-OCR output -> boxes in image pixels, and the text without them.

The model writes ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>``, coordinates in a
0-999 space over the whole image. Upstream scales them with ``int(x / 999 * image_width)``
(deepseek-ai/DeepSeek-OCR-2, ``DeepSeek-OCR2-vllm/run_dpsk_ocr2_image.py``, ``draw_bounding_boxes``);
so does the shared ``vlm.boxes.parse_boxes``.

What happens to a span in ``text``:

- document mode (``keep_labels=False``): the label is a layout class (``title``, ``text``,
  ``table``, ``image``...) and the content follows the span. As upstream writes ``result.mmd``: an
  ``image`` span becomes a figure link (upstream ``![](images/N.jpg)``, here ``![](figure-N.png)``,
  N counting the page's figures from 0; its box in ``boxes`` and its crop in the result's
  ``figures``, see ``engine/figures.py``), every other span
  goes, ``\\coloneqq`` / ``\\eqqcolon`` become ``:=`` / ``=:``, and runs of blank lines shrink to
  one (upstream's PDF script does this with two ``replace`` calls that miss runs of 6+ newlines);
- other modes (``keep_labels=True``): the label *is* the content (OCR with grounding writes each
  line as a ref; ``find`` refs the searched term), so it stays as plain text.

Only grounding tags are markup here. The stop and padding tokens are cut by token id before
decoding (``adapter``), so text such as a literal ``</s>`` in a page is kept, as upstream keeps it.

Each box also becomes a ``lines`` entry (its label, or in document mode the text that follows the
span). Malformed output is tolerated: a ``<|det|>`` without its closing tag runs to the end, a
coordinate group that is not four numbers is skipped, stray tags are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.figures import figure_link

from ..vlm.boxes import parse_boxes

__all__ = ["Grounded", "document_text", "parse_boxes", "parse_grounding"]

COORD_MAX = 999
FIGURE_LABEL = "image"
LATEX_MACROS = (("\\coloneqq", ":="), ("\\eqqcolon", "=:"))
_SPAN = re.compile(r"<\|ref\|>(.*?)<\|/ref\|>\s*<\|det\|>(.*?)(?:<\|/det\|>|$)", re.DOTALL)
_DET_ONLY = re.compile(r"<\|det\|>(.*?)(?:<\|/det\|>|$)", re.DOTALL)
_TAGS = re.compile(r"<\|/?(?:ref|det|grounding)\|>")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class Grounded:
    text: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)


def document_text(text: str) -> str:
    """Upstream's clean-up of markdown output: LaTeX macros mapped, at most one blank line in a row."""
    for macro, plain in LATEX_MACROS:
        text = text.replace(macro, plain)
    return _BLANK_LINES.sub("\n\n", text)


def parse_grounding(raw: str, width: int, height: int, keep_labels: bool = True) -> Grounded:
    """The text without grounding markup, its boxes and lines (see the module doc)."""
    spans = list(_SPAN.finditer(raw))
    boxes: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    pieces: list[str] = []
    cursor = 0
    figures = 0
    for i, span in enumerate(spans):
        label = _TAGS.sub("", span.group(1)).strip()
        pieces.append(raw[cursor : span.start()])
        if keep_labels:
            pieces.append(label)
        figure = None
        if not keep_labels and label == FIGURE_LABEL:
            figure = figures
            pieces.append(f"{figure_link(figure)}\n")
            figures += 1
        cursor = span.end()
        following = raw[cursor : spans[i + 1].start() if i + 1 < len(spans) else len(raw)]
        line_text = label if keep_labels else _TAGS.sub("", _DET_ONLY.sub("", following)).strip()
        for x1, y1, x2, y2 in parse_boxes(span.group(2), width, height, COORD_MAX):
            box: dict[str, Any] = {"label": label, "box": [x1, y1, x2, y2]}
            if figure is not None:
                box["figure"] = figure  # the N of its ![](figure-N.png)
            boxes.append(box)
            lines.append({"text": line_text, "box": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "score": None})
    pieces.append(raw[cursor:])
    text = _TAGS.sub("", _DET_ONLY.sub("", "".join(pieces)))
    if not keep_labels:
        text = document_text(text)
    return Grounded(text=text.strip(), boxes=boxes, lines=lines)
