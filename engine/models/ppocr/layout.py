"""Reading order: text lines grouped into blocks and columns by cuts through the gaps between them.

An XY-cut on the line boxes: a region is cut into horizontal strips at every empty row of pixels;
consecutive strips that share an empty vertical gutter, with long text lines on both sides of it,
form a column section that is read column by column (each side is cut again the same way).
Everything else is read row by row (``rows``: PaddleOCR's rule), and a gap taller than a line
starts a new block. A single-column page therefore keeps PaddleOCR's order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

ROW_GAP = 10  # PaddleOCR's pixels between tops that start a new row, at the least
GUTTER = 0.8  # a column gutter is at least this many line heights wide
COLUMN_LINE_ASPECT = 5.0  # lines of a text column are this many times wider than high (median)
BLOCK_GAP = 1.0  # a vertical gap of more than this many line heights starts a new block


@dataclass(frozen=True)
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float


def rows(boxes: list[np.ndarray]) -> list[int]:
    """Indices of ``boxes`` top to bottom, left to right within a row.

    Boxes whose tops are closer than half a typical line height (``ROW_GAP`` at the least) to the
    one above share its row: PaddleOCR's rule, with the gap scaled for large text.
    """
    if not boxes:
        return []
    tops = np.array([box[0, 1] for box in boxes], dtype=np.float64)
    lefts = np.array([box[0, 0] for box in boxes], dtype=np.float64)
    heights = [np.linalg.norm(box[0] - box[3]) for box in boxes]
    gap = max(ROW_GAP, 0.5 * float(np.median(heights)))
    by_top = np.argsort(tops, kind="stable")
    row_of = np.concatenate([[0], np.cumsum(np.diff(tops[by_top]) >= gap)])
    return by_top[np.lexsort((lefts[by_top], row_of))].tolist()


def _runs(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of 1-D intervals as sorted disjoint intervals."""
    merged: list[list[float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _strips(rects: list[Rect], members: list[int]) -> list[list[int]]:
    """``members`` cut at every horizontal line that crosses no box, top to bottom."""
    runs = _runs([(rects[i].y0, rects[i].y1) for i in members])
    strips: list[list[int]] = [[] for _ in runs]
    for i in members:
        strips[next(k for k, (lo, hi) in enumerate(runs) if lo <= rects[i].y0 <= hi)].append(i)
    return strips


def _gutters(rects: list[Rect], members: list[int], width: float) -> list[tuple[float, float]]:
    """Empty vertical bands at least ``width`` wide between the boxes of ``members``."""
    runs = _runs([(rects[i].x0, rects[i].x1) for i in members])
    return [(a[1], b[0]) for a, b in itertools.pairwise(runs) if b[0] - a[1] >= width]


def _common(gutters: list[tuple[float, float]], others: list[tuple[float, float]], width: float):
    """The parts of ``gutters`` that ``others`` also leave empty, still ``width`` wide."""
    found = []
    for lo, hi in gutters:
        for olo, ohi in others:
            if min(hi, ohi) - max(lo, olo) >= width:
                found.append((max(lo, olo), min(hi, ohi)))
    return found


class _Reader:
    def __init__(self, boxes: list[np.ndarray]) -> None:
        self.boxes = boxes
        self.rects = [Rect(*box.min(axis=0), *box.max(axis=0)) for box in boxes]
        self.line_height = float(np.median([r.y1 - r.y0 for r in self.rects])) if boxes else 0.0
        self.order: list[int] = []
        self.block = [0] * len(boxes)
        self.blocks = 0
        self.fresh = False  # the next strip starts a block whatever its gap (a column's first)

    def _text_column(self, members: list[int]) -> bool:
        """Two lines or more, long ones: a column of running text (not a column of table cells)."""
        if len(members) < 2:
            return False
        aspects = [
            (self.rects[i].x1 - self.rects[i].x0) / max(1.0, self.rects[i].y1 - self.rects[i].y0) for i in members
        ]
        return float(np.median(aspects)) >= COLUMN_LINE_ASPECT

    def read(self, members: list[int]) -> None:
        """Append ``members`` to the order, cutting them into blocks and columns."""
        strips = _strips(self.rects, members)
        width = GUTTER * self.line_height
        start = 0
        while start < len(strips):
            # the longest run of strips from ``start`` sharing a gutter with text columns on both sides
            gutters = _gutters(self.rects, strips[start], width)
            end, best = start + 1, None
            shared = gutters
            while shared:
                cut = self._columns([i for strip in strips[start:end] for i in strip], shared)
                if cut is not None:
                    best = (end, cut)
                if end == len(strips):
                    break
                shared = _common(shared, _gutters(self.rects, strips[end], width), width)
                end += 1
            if best is None:
                self._rows(strips[start])
                start += 1
                continue
            end, (left, right) = best
            for side in (left, right):
                self.fresh = True
                self.read(side)
            start = end

    def _columns(self, members: list[int], gutters: list[tuple[float, float]]):
        """``members`` split at the first gutter that has a text column on each side, or None."""
        for lo, hi in gutters:
            left = [i for i in members if self.rects[i].x1 <= lo]
            right = [i for i in members if self.rects[i].x0 >= hi]
            if self._text_column(left) and self._text_column(right):
                return left, right
        return None

    def _rows(self, members: list[int]) -> None:
        """One strip, row by row; a new block unless it follows the last block closely."""
        top = min(self.rects[i].y0 for i in members)
        last = self.order[-1] if self.order else None
        previous = self.rects[last] if last is not None else None
        close = (
            not self.fresh
            and previous is not None
            and 0 <= top - previous.y1 <= BLOCK_GAP * self.line_height
            and min(self.rects[i].x0 for i in members) < previous.x1
            and max(self.rects[i].x1 for i in members) > previous.x0
        )
        if not close and self.order:
            self.blocks += 1
        self.fresh = False
        for k in rows([self.boxes[i] for i in members]):
            self.order.append(members[k])
            self.block[members[k]] = self.blocks


def reading_order(boxes: list[np.ndarray]) -> tuple[list[int], list[int]]:
    """(indices of ``boxes`` in reading order, block number of each box), blocks counted from 0."""
    reader = _Reader(boxes)
    if boxes:
        reader.read(list(range(len(boxes))))
    return reader.order, reader.block
