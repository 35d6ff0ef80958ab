"""dsocr's prompt types -> PaddleOCR-VL's task prompts (its model card; PaddleOCR's
``PaddleOCR-VL`` pipeline sends the same strings for each layout element).

PaddleOCR-VL takes only its fixed prompts (no free-form instruction). Whole-page ``document`` and
plain ``free`` text both use ``OCR:`` (PaddleOCR's page pipeline runs a layout model first and sends
each region its own prompt; dsocr sends the page). ``ocr`` (lines with boxes) is 1.5's
``Spotting:``; ``seal`` is 1.5's ``Seal Recognition:``.
"""

from __future__ import annotations

from ..task_prompts import TaskPrompts

PROMPTS = TaskPrompts(
    "paddleocr-vl",
    {
        "document": "OCR:",
        "ocr": "Spotting:",
        "free": "OCR:",
        "table": "Table Recognition:",
        "formula": "Formula Recognition:",
        "chart": "Chart Recognition:",
        "seal": "Seal Recognition:",
    },
)
