"""Mistral-shaped OCR: ``POST /v1/ocr`` (what the ``mistralai`` SDK's ``client.ocr.process`` calls).

``{model, document: {type: document_url | image_url, ...}, pages?, include_image_base64?}`` ->
``{pages: [{index, markdown, images, dimensions: {dpi, height, width}, boxes}], model, usage_info}``.
Page indexes are 0-based as in Mistral's API; ``boxes`` (ours, in pixels of the rendered page) is
an extra field per page. ``images`` holds the result's ``figures`` (``engine/figures.py``) in
Mistral's shape, ``id`` as the page's markdown links it; ``image_base64`` (a PNG data URL) only
with ``include_image_base64``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from supervisor.body_budget import expect_continue
from supervisor.documents import read_pages
from supervisor.errors import ClientError
from supervisor.image_urls import load_url
from supervisor.json_body import read_json
from supervisor.openai_api import openai_errors, served_lifecycle
from supervisor.pdf import is_pdf
from supervisor.request_log import log_ocr
from supervisor.responses import json_response
from supervisor.routes import admit, parse_keep_alive
from supervisor.service import SERVICE

IMAGE_DPI = 72  # an image's pixels are its dimensions; Mistral reports the DPI it rendered at
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
MAX_SELECTED = 10_000


def parse_pages(raw: Any) -> list[int] | None:
    """Mistral's 0-based page selection (a list, or '0,2-4') -> our 1-based page numbers."""
    if raw is None:
        return None
    numbers: list[int] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise ClientError(400, "'pages' must hold page indexes from 0")
            numbers.append(item + 1)
    elif isinstance(raw, str):
        for piece in raw.split(","):
            match = _RANGE.match(piece)
            if not match:
                raise ClientError(400, f"'pages' must look like '0,2-4', not {raw!r}")
            first = int(match[1])
            last = int(match[2]) if match[2] else first
            if last < first or last - first > MAX_SELECTED:
                raise ClientError(400, f"bad page range {piece.strip()!r}")
            numbers.extend(range(first + 1, last + 2))
    else:
        raise ClientError(400, "'pages' must be a list of page indexes or a string like '0,2-4'")
    if len(numbers) > MAX_SELECTED:
        raise ClientError(400, "too many pages selected")
    return numbers


def _document_url(document: Any) -> Any:
    if not isinstance(document, dict):
        raise ClientError(400, "'document' must be an object with a 'type'")
    kind = document.get("type")
    if kind == "document_url":
        return document.get("document_url")
    if kind == "image_url":
        image = document.get("image_url")
        return image.get("url") if isinstance(image, dict) else image
    raise ClientError(400, "'document.type' must be 'document_url' or 'image_url'")


def _images(result: dict[str, Any], with_base64: bool) -> list[dict[str, Any]]:
    return [
        {
            "id": figure["id"],
            "top_left_x": figure["box"][0],
            "top_left_y": figure["box"][1],
            "bottom_right_x": figure["box"][2],
            "bottom_right_y": figure["box"][3],
            "image_base64": f"data:image/png;base64,{figure['png_base64']}" if with_base64 else None,
        }
        for figure in result.get("figures") or []
    ]


def _page(
    index: int, result: dict[str, Any], width: int, height: int, dpi: int, with_base64: bool = False
) -> dict[str, Any]:
    return {
        "index": index,
        "markdown": str(result.get("text", "")),
        "images": _images(result, with_base64),
        "dimensions": {"dpi": dpi, "height": height, "width": width},
        "boxes": result.get("boxes", []),
    }


@openai_errors
async def ocr(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if len(service.lifecycles) == 1:
        admit(service.lifecycles[service.default_model])
    body = await read_json(request, service.settings)
    lc = served_lifecycle(service, body.get("model"))
    admit(lc)
    data = await load_url(_document_url(body.get("document")), service.settings)
    pages = parse_pages(body.get("pages"))
    keep_alive = parse_keep_alive(body.get("keep_alive"))
    dpi = service.settings.pdf_dpi if is_pdf(data) else IMAGE_DPI
    options = {"prompt_type": "document"}
    t0 = time.perf_counter()
    out = [
        _page(p.number - 1, p.result, p.width, p.height, dpi, body.get("include_image_base64") is True)
        async for p in read_pages(lc, service.settings, data, options, pages=pages, keep_alive=keep_alive)
    ]
    log_ocr(lc.model, len(out), time.perf_counter() - t0, 200, request["request_id"])
    return json_response({
        "pages": out,
        "model": lc.model,
        "usage_info": {"pages_processed": len(out), "doc_size_bytes": len(data)},
        "document_annotation": None,
    })  # fmt: skip


def add_mistral_routes(app: web.Application) -> None:
    app.router.add_post("/v1/ocr", ocr, expect_handler=expect_continue)
