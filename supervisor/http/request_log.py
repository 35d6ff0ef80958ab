"""The one INFO line per OCR request, for every route that reads documents, with the request id."""

from __future__ import annotations

import logging

log = logging.getLogger("dsocr.supervisor.ocr")


def log_ocr(model: str, pages: int, seconds: float, status: int | str, request_id: str) -> None:
    log.info("ocr model=%s pages=%d seconds=%.2f status=%s [%s]", model, pages, seconds, status, request_id)
