"""How ``dsocr ocr`` writes a result: text, markdown or JSON, to stdout or one file per input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

FORMATS = ("text", "md", "json")
SUFFIXES = {"text": ".txt", "md": ".md", "json": ".json"}


def page_text(result: dict[str, Any]) -> str:
    """The text, a PDF's pages each under ``--- Page N ---`` (the upstream tools' marker)."""
    pages = result.get("pages")
    if not isinstance(pages, list):
        return result.get("text", "")
    return "\n\n".join(f"--- Page {page['page']} ---\n{page.get('text', '')}" for page in pages)


def render(path: Path, result: dict[str, Any], fmt: str, indent: bool = False) -> str:
    if fmt == "json":
        return orjson.dumps({"file": str(path), **result}, option=orjson.OPT_INDENT_2 if indent else 0).decode()
    return page_text(result)


def output_paths(paths: list[Path], folder: Path, fmt: str) -> dict[Path, Path]:
    """One output file per input: ``name.md`` for ``name.pdf``; ``name.pdf.md`` where stems clash."""
    suffix = SUFFIXES[fmt]
    stems = [p.stem for p in paths]
    return {p: folder / (f"{p.stem}{suffix}" if stems.count(p.stem) == 1 else f"{p.name}{suffix}") for p in paths}
