"""PaddleOCR-VL's table answers (OTSL) -> an HTML table, as PaddleX's ``convert_otsl_to_html`` does.

The model writes a table row by row in OTSL's six tags: ``<fcel>`` a cell with text (the text
follows), ``<ecel>`` an empty cell, ``<lcel>`` merged with the cell on its left, ``<ucel>`` with
the cell above, ``<xcel>`` with both, ``<nl>`` the end of a row. A cell spans the merge tags to its
right and below it; short rows are padded with empty cells. Cell text is HTML-escaped.
"""

from __future__ import annotations

import html
import re

TAG = re.compile(r"<(fcel|ecel|lcel|ucel|xcel|nl)>")
RIGHT, DOWN = {"lcel", "xcel"}, {"ucel", "xcel"}


def rows_of(otsl: str) -> list[list[tuple[str, str]]]:
    rows: list[list[tuple[str, str]]] = [[]]
    matches = list(TAG.finditer(otsl))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(otsl)
        if match[1] == "nl":
            rows.append([])
        else:
            rows[-1].append((match[1], otsl[match.end() : end].strip()))
    rows = [row for row in rows if row]
    width = max((len(row) for row in rows), default=0)
    return [row + [("ecel", "")] * (width - len(row)) for row in rows]


def to_html(otsl: str) -> str | None:
    """The HTML table for an OTSL answer; None when it holds no OTSL tag."""
    rows = rows_of(otsl)
    if not rows:
        return None
    out = []
    for r, row in enumerate(rows):
        cells = []
        for c, (tag, text) in enumerate(row):
            if tag not in ("fcel", "ecel"):
                continue  # covered by a span
            colspan = 1
            while c + colspan < len(row) and row[c + colspan][0] in RIGHT:
                colspan += 1
            rowspan = 1
            while r + rowspan < len(rows) and rows[r + rowspan][c][0] in DOWN:
                rowspan += 1
            attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (f' colspan="{colspan}"' if colspan > 1 else "")
            cells.append(f"<td{attrs}>{html.escape(text, quote=False)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(out) + "</table>"
