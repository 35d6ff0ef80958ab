"""The shape of an OCR answer: one image, or a PDF's pages merged into one result.

Besides text, lines and boxes, a result may carry ``figures`` (PNG crops, shape in
``engine/figures.py``) and ``regions`` (layout regions: ``{"type", "box": [x1, y1, x2, y2], "score",
"text", "lines": [indices into lines], "html"?, "cells"?, "figure"?, "level"?, "size"?}``, ``type``
one of title, text, figure, figure_caption, table, table_caption, header, footer, reference,
equation; a table's ``cells`` (rows of texts) and ``html``, a title's heading ``level`` and type
``size`` against the body's, which ``markdown_pages`` levels a PDF's headings by). Both pass through
unchanged for one image; a PDF's pages keep their own, and the merged answer's figure ids and
links carry the page (``page-P-figure-N.png``) so one markdown document links each once.
"""

from __future__ import annotations

import re
from typing import Any

_FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\((figure-\d+\.png)\)")


def result_body(result: dict[str, Any]) -> dict[str, Any]:
    body = {
        "text": result.get("text", ""),
        "raw_text": result.get("raw_text", result.get("text", "")),
        "boxes": result.get("boxes", []),
        "lines": result.get("lines", []),
        "image_dims": result.get("image_dims"),
        "timing": result.get("timing", {}),
    }
    # generative models say why they stopped and how many tokens it took
    for key in ("finish_reason", "usage", "rotation", "figures", "regions"):
        if key in result:
            body[key] = result[key]
    return body


def pdf_body(results: list[dict[str, Any]], numbers: list[int]) -> dict[str, Any]:
    pages = [{"page": n, **result_body(r)} for n, r in zip(numbers, results)]
    timing: dict[str, float] = {}
    for page in pages:
        for key, value in page.pop("timing").items():
            timing[key] = timing.get(key, 0.0) + value
    usage: dict[str, int] = {}
    for page in pages:
        for key, value in (page.get("usage") or {}).items():
            usage[key] = usage.get(key, 0) + int(value)
    figures = [
        {**figure, "id": page_figure_id(page["page"], figure["id"]), "page": page["page"]}
        for page in pages
        for figure in page.get("figures", [])
    ]
    merged = {
        "text": "\n\n".join(page_figure_links(page["page"], page["text"]) for page in pages),
        "raw_text": "\n\n".join(page["raw_text"] for page in pages),
        "boxes": [{**box, "page": page["page"]} for page in pages for box in page["boxes"]],
        "image_dims": pages[0]["image_dims"],
        "pages": pages,
        "timing": timing,
    }
    if usage:
        merged["usage"] = usage
    if figures:
        merged["figures"] = figures
    return merged


def page_figure_id(page: int, figure_id: str) -> str:
    return f"page-{page}-{figure_id}"


def page_figure_links(page: int, text: str) -> str:
    """A page's ``![](figure-N.png)`` links renamed to the merged document's ids."""
    return _FIGURE_LINK.sub(lambda m: f"![{m[1]}]({page_figure_id(page, m[2])})", text)
