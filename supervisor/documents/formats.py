"""``output=json|hocr|alto|pdf`` of ``/ocr`` and ``/ocr-pdf`` (and ``dsocr ocr --format``): an
answer written as an hOCR or ALTO document, or as a searchable PDF (the uploaded PDF with its
text layer; an image becomes a one-page PDF).
"""

from __future__ import annotations

import asyncio
from pathlib import PurePath
from typing import Any

from aiohttp import web

from supervisor.documents.alto import alto_document
from supervisor.documents.hocr import hocr_document
from supervisor.documents.pdf import is_pdf
from supervisor.documents.text_layout import body_pages
from supervisor.http.errors import ClientError

OUTPUTS = ("json", "hocr", "alto", "pdf")
CONTENT_TYPES = {"hocr": "text/html", "alto": "application/xml", "pdf": "application/pdf"}
SUFFIXES = {"hocr": ".hocr", "alto": ".alto.xml", "pdf": ".pdf"}


def requested_output(query: Any, fields: dict[str, str]) -> str:
    """The ``output`` form field, else the query's; 400 for one not known (before any inference)."""
    output = (fields.get("output") or query.get("output") or "json").strip().lower()
    if output not in OUTPUTS:
        raise ClientError(400, f"unknown output {output!r}; outputs: {', '.join(OUTPUTS)}")
    return output


def render_document(output: str, body: dict[str, Any], data: bytes, filename: str = "") -> bytes:
    """``body`` (an ``/ocr`` answer for the upload ``data``) as an hOCR, ALTO or PDF document."""
    pages = body_pages(body)
    if output == "hocr":
        return hocr_document(pages, filename).encode("utf-8")
    if output == "alto":
        return alto_document(pages, filename)
    if output == "pdf":
        from supervisor.documents import (
            searchable_pdf,  # pikepdf loads only when a PDF is asked for (it logs at import)
        )

        pdf = data if is_pdf(data) else searchable_pdf.image_pdf(data)
        return searchable_pdf.add_text_layer(pdf, pages)
    raise ValueError(output)


async def document_response(output: str, body: dict[str, Any], data: bytes, filename: str) -> web.Response:
    document = await asyncio.to_thread(render_document, output, body, data, filename)
    stem = PurePath(filename).stem if filename else "document"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "document"
    headers = {"Content-Disposition": f'attachment; filename="{safe}{SUFFIXES[output]}"'}
    charset = None if output == "pdf" else "utf-8"
    return web.Response(body=document, content_type=CONTENT_TYPES[output], charset=charset, headers=headers)
