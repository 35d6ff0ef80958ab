"""How ``dsocr ocr`` writes a result: text, markdown, JSON, hOCR, ALTO or a searchable PDF, to stdout
or one file per input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from supervisor.documents.markdown_pages import join_pages

FORMATS = ("text", "md", "json", "hocr", "alto", "pdf")
DOCUMENTS = ("hocr", "alto", "pdf")  # written by ``supervisor.documents.formats``, as bytes
SUFFIXES = {"text": ".txt", "md": ".md", "json": ".json", "hocr": ".hocr", "alto": ".alto.xml", "pdf": ".pdf"}


def page_text(result: dict[str, Any]) -> str:
    """The text, a PDF's pages each under ``--- Page N ---`` (the upstream tools' marker), as one
    markdown document (``supervisor.documents.markdown_pages``)."""
    pages = result.get("pages")
    if not isinstance(pages, list):
        return result.get("text", "")
    return join_pages(pages)


def render(path: Path, result: dict[str, Any], fmt: str, indent: bool = False) -> str:
    if fmt == "json":
        return orjson.dumps({"file": str(path), **result}, option=orjson.OPT_INDENT_2 if indent else 0).decode()
    return page_text(result)


def render_document(path: Path, result: dict[str, Any], fmt: str) -> bytes:
    """An hOCR, ALTO or searchable PDF document of ``path`` (read again for a PDF's pages)."""
    from supervisor.documents.formats import render_document as render  # pikepdf: only when asked for

    return render(fmt, result, path.read_bytes(), path.name)


def output_paths(paths: list[Path], folder: Path, fmt: str) -> dict[Path, Path]:
    """One output file per input: ``name.md`` for ``name.pdf``; ``name.pdf.md`` where stems clash."""
    suffix = SUFFIXES[fmt]
    stems = [p.stem for p in paths]
    return {p: folder / (f"{p.stem}{suffix}" if stems.count(p.stem) == 1 else f"{p.name}{suffix}") for p in paths}
