"""The shape of an OCR answer: one image, or a PDF's pages merged into one result."""

from __future__ import annotations

from typing import Any


def result_body(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": result.get("text", ""),
        "raw_text": result.get("raw_text", result.get("text", "")),
        "boxes": result.get("boxes", []),
        "lines": result.get("lines", []),
        "image_dims": result.get("image_dims"),
        "timing": result.get("timing", {}),
    }


def pdf_body(results: list[dict[str, Any]], numbers: list[int]) -> dict[str, Any]:
    pages = [{"page": n, **result_body(r)} for n, r in zip(numbers, results)]
    timing: dict[str, float] = {}
    for page in pages:
        for key, value in page.pop("timing").items():
            timing[key] = timing.get(key, 0.0) + value
    return {
        "text": "\n\n".join(page["text"] for page in pages),
        "raw_text": "\n\n".join(page["raw_text"] for page in pages),
        "boxes": [{**box, "page": page["page"]} for page in pages for box in page["boxes"]],
        "image_dims": pages[0]["image_dims"],
        "pages": pages,
        "timing": timing,
    }
