"""A result's ``lines`` as pages of blocks, lines and words with boxes: what hOCR, ALTO and the
searchable PDF's text layer are written from (``supervisor.documents.hocr``, ``supervisor.documents.alto``,
``supervisor.documents.searchable_pdf``).

Word boxes are the engine's where it gives them (ppocr: ``words``, split at the recognizer's
character positions). A model that gives only line boxes (deepseek-ocr-2's grounding) gets its
words placed along the line by their share of its characters: the only positions it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Quad = list[tuple[float, float]]  # corners clockwise from the top-left, page pixels


@dataclass
class Word:
    text: str
    quad: Quad
    score: float | None

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return bbox_of(self.quad)


@dataclass
class TextLine:
    text: str
    quad: Quad
    score: float | None
    words: list[Word]
    block: int = 0

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        return bbox_of(self.quad)


@dataclass
class TextPage:
    number: int  # 1-based
    width: int
    height: int
    lines: list[TextLine] = field(default_factory=list)
    rotation: int = 0  # degrees the engine found the page turned clockwise

    def blocks(self) -> list[list[TextLine]]:
        """Lines grouped by their reading-order block, in order (a new block where it changes)."""
        groups: list[list[TextLine]] = []
        for index, line in enumerate(self.lines):
            if not groups or line.block != self.lines[index - 1].block:
                groups.append([])
            groups[-1].append(line)
        return groups


def bbox_of(quad: Quad) -> tuple[int, int, int, int]:
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    return int(min(xs)), int(min(ys)), int(round(max(xs))), int(round(max(ys)))


def _quad(box: Any) -> Quad | None:
    """A 4-point box as a quad; an ``[x1, y1, x2, y2]`` box as its rectangle."""
    if isinstance(box, list) and len(box) == 4 and all(isinstance(p, list) and len(p) == 2 for p in box):
        return [(float(p[0]), float(p[1])) for p in box]
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
        x1, y1, x2, y2 = (float(v) for v in box)
        return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return None


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def words_by_characters(text: str, quad: Quad, score: float | None) -> list[Word]:
    """Words placed along the line's top and bottom edges by their share of its characters."""
    total = len(text)
    words, start = [], 0
    for part in text.split(" "):
        if part:
            a, b = start / total, (start + len(part)) / total
            p0, p1, p2, p3 = quad
            words.append(Word(part, [_lerp(p0, p1, a), _lerp(p0, p1, b), _lerp(p3, p2, b), _lerp(p3, p2, a)], score))
        start += len(part) + 1
    return words


def text_line(line: dict[str, Any]) -> TextLine | None:
    text = str(line.get("text", "")).strip()
    quad = _quad(line.get("box"))
    if not text or quad is None:
        return None
    score = line.get("score")
    score = float(score) if isinstance(score, (int, float)) else None
    words = [
        Word(str(w["text"]), q, float(w["score"]) if isinstance(w.get("score"), (int, float)) else score)
        for w in line.get("words") or []
        if str(w.get("text", "")).strip() and (q := _quad(w.get("box"))) is not None
    ]
    if not words:
        words = words_by_characters(" ".join(text.split()), quad, score)
    return TextLine(text, quad, score, words, int(line.get("block", 0) or 0))


def text_page(number: int, width: int, height: int, result: dict[str, Any]) -> TextPage:
    """One page of a result (the engine's answer for one image or one PDF page)."""
    lines = [t for line in result.get("lines") or [] if (t := text_line(line)) is not None]
    return TextPage(number, width, height, lines, int(result.get("rotation", 0) or 0))


def body_pages(body: dict[str, Any]) -> list[TextPage]:
    """The pages of an answer as ``/ocr`` gives it (``results.result_body`` or ``pdf_body``)."""
    pages = body.get("pages")
    if not isinstance(pages, list):
        pages = [{"page": 1, **body}]
    out = []
    for page in pages:
        dims = page.get("image_dims") or {}
        out.append(text_page(int(page.get("page", 1)), int(dims.get("w", 0)), int(dims.get("h", 0)), page))
    return out
