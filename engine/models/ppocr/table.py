"""A table region's lines placed into rows and columns from their boxes alone.

Rows: lines whose vertical centres lie within half a line height of each other. Columns: the
x-extents of the cells of the rows that have the most cells, merged where they overlap; every
cell then spans the columns its box overlaps (a ``colspan`` where it covers more than one).
Works for ruled and unruled tables alike: the rules are not read, only where the text sits.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

ROW_TOLERANCE = 0.5  # line heights between a line's centre and its row's
MIN_ROWS, MIN_COLUMNS = 3, 2


@dataclass
class Cell:
    row: int
    column: int
    span: int
    text: str


@dataclass
class Grid:
    rows: int
    columns: int
    cells: list[Cell]

    def matrix(self) -> list[list[str]]:
        """rows x columns texts; a spanning cell's text in its first column, the rest empty."""
        out = [[""] * self.columns for _ in range(self.rows)]
        for cell in self.cells:
            current = out[cell.row][cell.column]
            out[cell.row][cell.column] = f"{current} {cell.text}".strip()
        return out


def _rows(rects: list[tuple[float, float, float, float]]) -> list[list[int]]:
    height = float(np.median([r[3] - r[1] for r in rects]))
    order = sorted(range(len(rects)), key=lambda i: (rects[i][1] + rects[i][3]) / 2)
    rows: list[list[int]] = []
    centre = None
    for i in order:
        c = (rects[i][1] + rects[i][3]) / 2
        if rows and centre is not None and abs(c - centre) <= ROW_TOLERANCE * height:
            rows[-1].append(i)
            centre = float(np.mean([(rects[k][1] + rects[k][3]) / 2 for k in rows[-1]]))
        else:
            rows.append([i])
            centre = c
    return [sorted(row, key=lambda i: rects[i][0]) for row in rows]


def _columns(rects, rows: list[list[int]]) -> list[tuple[float, float]]:
    most = max(len(row) for row in rows)
    spans = sorted((rects[i][0], rects[i][2]) for row in rows if len(row) == most for i in row)
    merged: list[list[float]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def grid(rects: list[tuple[float, float, float, float]], texts: list[str]) -> Grid | None:
    """The table the lines at ``rects`` make, or None when they do not make one."""
    if len(rects) < MIN_ROWS * MIN_COLUMNS:
        return None
    rows = _rows(rects)
    columns = _columns(rects, rows)
    multi = sum(len(row) >= MIN_COLUMNS for row in rows)
    if len(rows) < MIN_ROWS or len(columns) < MIN_COLUMNS or multi < 0.6 * len(rows):
        return None
    cells = []
    for r, row in enumerate(rows):
        for i in row:
            x0, _, x1, _ = rects[i]
            hit = [k for k, (lo, hi) in enumerate(columns) if min(x1, hi) - max(x0, lo) > 0]
            if not hit:  # in a gap between columns: the nearest one
                centre = (x0 + x1) / 2
                hit = [int(np.argmin([abs(centre - (lo + hi) / 2) for lo, hi in columns]))]
            cells.append(Cell(r, hit[0], hit[-1] - hit[0] + 1, texts[i]))
    return Grid(len(rows), len(columns), cells)


def markdown(table: Grid) -> str:
    def row(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    matrix = table.matrix()
    lines = [row(matrix[0]), row(["---"] * table.columns)]
    lines += [row(values) for values in matrix[1:]]
    return "\n".join(lines)


def html(table: Grid) -> str:
    """The table with ``colspan`` where a cell covers more than one column; the first row as head."""
    parts = ["<table>"]
    for r in range(table.rows):
        tag = "th" if r == 0 else "td"
        cells = sorted((c for c in table.cells if c.row == r), key=lambda c: c.column)
        merged: dict[int, Cell] = {}
        for cell in cells:  # two lines in one cell: one cell
            if cell.column in merged:
                merged[cell.column].text += " " + cell.text
            else:
                merged[cell.column] = Cell(cell.row, cell.column, cell.span, cell.text)
        out, column = [], 0
        for start in sorted(merged):
            cell = merged[start]
            if start < column:
                continue  # covered by a span before it
            out += [f"<{tag}></{tag}>"] * (start - column)
            span = f' colspan="{cell.span}"' if cell.span > 1 else ""
            out.append(f"<{tag}{span}>{escape(cell.text)}</{tag}>")
            column = start + cell.span
        out += [f"<{tag}></{tag}>"] * (table.columns - column)
        parts.append("<tr>" + "".join(out) + "</tr>")
    parts.append("</table>")
    return "".join(parts)
