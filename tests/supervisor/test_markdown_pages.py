"""A PDF's pages joined into one markdown document: markers, heading levels, split tables."""

from __future__ import annotations

from supervisor.documents.markdown_pages import heading_levels, join_pages


def _title(text: str, level: int, size: float) -> dict:
    return {"type": "title", "text": text, "level": level, "size": size, "lines": [0]}


def _table(columns: int) -> dict:
    return {"type": "table", "cells": [[str(c) for c in range(columns)]], "lines": [0]}


def test_heading_levels_follow_the_type_size_across_pages() -> None:
    pages = [
        {"page": 1, "text": "# Report\n\n## Scope", "regions": [_title("Report", 1, 2.2), _title("Scope", 2, 1.6)]},
        # page 2's largest heading is a section, not a new document title
        {"page": 2, "text": "# Method\n\nText.", "regions": [_title("Method", 1, 1.55)]},
    ]
    assert heading_levels(pages) == {2.2: 1, 1.6: 2, 1.55: 2}
    assert join_pages(pages) == "--- Page 1 ---\n# Report\n\n## Scope\n\n--- Page 2 ---\n## Method\n\nText."


def test_a_table_across_a_page_break_stays_two_tables_with_a_note() -> None:
    pages = [
        {"page": 1, "text": "Intro\n\n| a | b |", "regions": [{"type": "text", "lines": [0]}, _table(2)]},
        {"page": 2, "text": "| c | d |\n\nAfter", "regions": [{"type": "header", "lines": [0]}, _table(2)]},
        {"page": 3, "text": "| e | f | g |", "regions": [_table(3)]},  # another table: no note
    ]
    joined = join_pages(pages)
    assert "| a | b |\n\n*(table continued on page 2)*\n\n--- Page 2 ---\n*(table continued from page 1)*" in joined
    assert "continued on page 3" not in joined and "continued from page 2" not in joined


def test_pages_without_regions_are_only_marked_and_figure_links_carry_the_page() -> None:
    pages = [{"page": 1, "text": "First"}, {"page": 2, "text": "![](figure-0.png)"}]
    assert join_pages(pages) == "--- Page 1 ---\nFirst\n\n--- Page 2 ---\n![](page-2-figure-0.png)"
