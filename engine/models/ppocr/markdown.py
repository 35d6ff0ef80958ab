"""Text from a page's blocks: markdown for ``document``, plain paragraphs for ``free``.

Markdown: titles as ``#`` headings (level from their type size, ``regions``), paragraphs joined
from their lines with a word broken at a line end joined again, tables as markdown tables,
figures as links to their crops, captions beside them, equations as code spans. Page headers,
footers and page numbers are left out (they stay in ``regions``).
"""

from __future__ import annotations

import re

from engine.figures import figure_link

from . import table
from .regions import FURNITURE, Block

# a word broken at a line end: "embank-" + "ments" -> "embankments" (a lower-case letter goes on)
_BROKEN = re.compile(r"(?<=[^\W\d_])-$")


def join_lines(texts: list[str]) -> str:
    """Lines of one paragraph as a reader reads them: spaces between, hyphenation joined."""
    out = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if out and _BROKEN.search(out) and text[:1].islower():
            out = out[:-1] + text
        else:
            out = f"{out} {text}" if out else text
    return out


def paragraphs(block: Block, texts: list[str], line_blocks: list[int]) -> list[str]:
    """A block's lines joined into paragraphs, a new one where the XY-cut saw a gap."""
    groups: list[list[str]] = []
    last = None
    for i in block.lines:
        if last is None or line_blocks[i] != last:
            groups.append([])
        groups[-1].append(texts[i])
        last = line_blocks[i]
    return [join_lines(g) for g in groups]


def block_markdown(block: Block, texts: list[str], line_blocks: list[int], figure: int | None) -> str:
    """One block's markdown ("" for what is left out of the text)."""
    if block.type in FURNITURE:
        return ""
    if block.type == "title":
        return f"{'#' * (block.level or 2)} {join_lines([texts[i] for i in block.lines])}"
    if block.type == "table" and block.table is not None:
        return table.markdown(block.table)
    if block.type == "figure":
        return figure_link(figure) if figure is not None else ""
    if block.type == "equation":
        return f"`{join_lines([texts[i] for i in block.lines])}`" if block.lines else ""
    return "\n\n".join(p for p in paragraphs(block, texts, line_blocks) if p)


def free_text(blocks: list[Block], texts: list[str], line_blocks: list[int]) -> str:
    """Every block's text (headers and footers too) as plain paragraphs, no markup."""
    found = [p for b in blocks for p in paragraphs(b, texts, line_blocks) if p]
    return "\n\n".join(found)
