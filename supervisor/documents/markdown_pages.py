"""A PDF's pages as one markdown document: ``/ocr-pdf``'s ``merged_text`` and ``dsocr ocr --format md``.

Each page under the upstream tools' marker (``--- Page N ---``). Where pages carry layout
``regions`` (the embedded model's ``document``), the document reads as one: headings take their
level from their type size across all pages (a section heading on page 3 is as deep as one of the
same size on page 1, whatever else page 3 holds), and a table that ends one page and starts the
next stays two tables, each with a note that it goes on (merging them would guess at a header row
and at cells cut by the break). Figure links carry the page, like the merged answer's ``figures``.
"""

from __future__ import annotations

from typing import Any

from supervisor.documents.results import page_figure_links

LEVEL_STEP = 0.88  # a heading this much smaller than the one above starts a deeper level
MAX_LEVEL = 6
FURNITURE = ("header", "footer")


def heading_levels(pages: list[dict[str, Any]]) -> dict[float, int]:
    """Each title size found in the pages' regions -> its level in the whole document."""
    sizes = sorted(
        {r["size"] for p in pages for r in p.get("regions") or [] if r.get("type") == "title" and "size" in r},
        reverse=True,
    )
    levels: dict[float, int] = {}
    level, top = 1, None
    for size in sizes:
        if top is not None and size < top * LEVEL_STEP:
            level, top = min(MAX_LEVEL, level + 1), size
        top = size if top is None else top
        levels[size] = level
    return levels


def _relevel(text: str, regions: list[dict[str, Any]], levels: dict[float, int]) -> str:
    lines = text.split("\n")
    for region in regions:
        if region.get("type") != "title" or region.get("size") not in levels:
            continue
        old = f"{'#' * region.get('level', 1)} {region.get('text', '')}"
        if old in lines:
            lines[lines.index(old)] = f"{'#' * levels[region['size']]} {region.get('text', '')}"
    return "\n".join(lines)


def _body(regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in regions if r.get("type") not in FURNITURE and (r.get("lines") or r.get("type") == "figure")]


def _columns(region: dict[str, Any]) -> int:
    cells = region.get("cells") or [[]]
    return len(cells[0])


def split_tables(pages: list[dict[str, Any]]) -> list[tuple[bool, bool]]:
    """For each page: (its last block is a table that goes on, its first is a table that goes on
    from the page before): same number of columns on both sides of the break."""
    found = [(False, False) for _ in pages]
    for k in range(len(pages) - 1):
        ends, starts = _body(pages[k].get("regions") or []), _body(pages[k + 1].get("regions") or [])
        table = ends and starts and ends[-1]["type"] == starts[0]["type"] == "table"
        if table and _columns(ends[-1]) == _columns(starts[0]):
            found[k] = (True, found[k][1])
            found[k + 1] = (found[k + 1][0], True)
    return found


def join_pages(pages: list[dict[str, Any]]) -> str:
    """``pages``: ``{"page": N, "text", "regions"?}`` each, in order."""
    levels = heading_levels(pages)
    splits = split_tables(pages)
    parts = []
    for page, (goes_on, goes_on_from) in zip(pages, splits):
        number = page["page"]
        text = page_figure_links(number, _relevel(page.get("text", ""), page.get("regions") or [], levels))
        if goes_on_from:
            text = f"*(table continued from page {number - 1})*\n\n{text}"
        if goes_on:
            text = f"{text}\n\n*(table continued on page {number + 1})*"
        parts.append(f"--- Page {number} ---\n{text}")
    return "\n\n".join(parts)
