"""The shape of an OCR answer: one image, or a PDF's pages merged into one result."""

from __future__ import annotations

from typing import Any


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
    for key in ("finish_reason", "usage", "rotation"):
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
    merged = {
        "text": "\n\n".join(page["text"] for page in pages),
        "raw_text": "\n\n".join(page["raw_text"] for page in pages),
        "boxes": [{**box, "page": page["page"]} for page in pages for box in page["boxes"]],
        "image_dims": pages[0]["image_dims"],
        "pages": pages,
        "timing": timing,
    }
    if usage:
        merged["usage"] = usage
    return merged
