"""The upstream DeepSeek-OCR web UI's routes, as aliases: ``/ocr-pdf``, ``/pdf-to-images``, and
its older ``/ocr`` field names (``mode``, ``search_text``) mapped to ours by ``upstream_fields``.

Both routes read the upload within the same limits as ``/ocr`` (``supervisor.api.forms``) and render
PDFs with ``supervisor.documents.pdf.PdfPages`` under the same page and pixel limits; ``/ocr-pdf`` reaches
the model through its owner task like every other route.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time

from aiohttp import web
from PIL import Image

from supervisor.api.forms import read_form, upstream_fields
from supervisor.api.shared import OPTION_FIELDS, admit, lifecycle_for, parse_keep_alive
from supervisor.core.service import SERVICE
from supervisor.documents.formats import document_response, requested_output
from supervisor.documents.markdown_pages import join_pages
from supervisor.documents.pages import read_pages
from supervisor.documents.pdf import PdfPages, is_pdf
from supervisor.documents.results import pdf_body
from supervisor.http.body_budget import expect_continue
from supervisor.http.errors import ClientError
from supervisor.http.request_log import log_ocr
from supervisor.http.responses import json_response


async def ocr_pdf(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    settings = service.settings
    admit(lifecycle_for(service, request.query.get("model")))
    form = await read_form(request, settings)
    fields = upstream_fields(form.fields)
    lc = lifecycle_for(service, fields.get("model") or request.query.get("model"))
    options = {k: fields[k] for k in OPTION_FIELDS if k in fields}
    options.setdefault("prompt_type", "document")
    keep_alive = parse_keep_alive(fields.get("keep_alive"))
    output = requested_output(request.query, fields)  # json | hocr | alto | pdf
    t0 = time.perf_counter()
    read = [p async for p in read_pages(lc, settings, form.data, options, keep_alive=keep_alive)]
    pages = [
        {"page": p.number, "text": p.result.get("text", ""), "raw_text": p.result.get("raw_text", p.result.get("text", "")),
         "boxes": p.result.get("boxes", []), "image_dims": {"w": p.width, "h": p.height}}
        for p in read
    ]  # fmt: skip
    seconds = time.perf_counter() - t0
    log_ocr(lc.model, len(pages), seconds, 200, request["request_id"])
    if output != "json":
        body = pdf_body([p.result for p in read], [p.number for p in read])
        return await document_response(output, body, form.data, form.filename)
    return json_response({
        "success": True,
        "filename": form.filename,
        "page_count": len(pages),
        "pages": pages,
        "merged_text": join_pages([{**p.result, "page": p.number} for p in read]),
        "prompt_type": options["prompt_type"],
        "metadata": {"model": lc.model, "device": service.device, "size_bytes": len(form.data),
                     "request_id": request["request_id"], "seconds": round(seconds, 3)},
    })  # fmt: skip


def _png_data_url(ppm: bytes) -> str:
    buf = io.BytesIO()
    with Image.open(io.BytesIO(ppm)) as image:
        image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


async def pdf_to_images(request: web.Request) -> web.Response:
    settings = request.app[SERVICE].settings
    form = await read_form(request, settings)
    if not form.is_pdf and not is_pdf(form.data):
        raise ClientError(400, "the file is not a PDF")
    doc = await asyncio.to_thread(
        PdfPages, form.data, settings.pdf_dpi, settings.max_pdf_pages, max_total_pixels=settings.max_pdf_pixels
    )
    images = []
    try:
        for number in doc.numbers:
            page = await asyncio.to_thread(doc.render, number)
            data = await asyncio.to_thread(_png_data_url, page.ppm)
            images.append({"data": data, "name": f"page_{number}.png", "width": page.width,
                           "height": page.height, "page_number": number})  # fmt: skip
            del page
    finally:
        doc.close()
    return json_response(
        {"success": True, "images": images, "page_count": len(images), "original_filename": form.filename}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/ocr-pdf", ocr_pdf, expect_handler=expect_continue)
    app.router.add_post("/pdf-to-images", pdf_to_images, expect_handler=expect_continue)
