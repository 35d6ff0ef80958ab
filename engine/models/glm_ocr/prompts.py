"""dsocr's prompt types -> GLM-OCR's instructions (its model card's "Prompt Limited" section and
the GLM-OCR SDK's ``glmocr/config.yaml``).

GLM-OCR reads regions with three fixed prompts (text, table, formula) and whole pages with the
SDK's default Markdown prompt; information extraction is a client-written JSON schema (``freeform``).
It writes no boxes: ``ocr`` is its text recognition.
"""

from __future__ import annotations

from ..task_prompts import TaskPrompts

DOCUMENT = (
    "Recognize the text in the image and output in Markdown format. Preserve the original layout "
    "(headings/paragraphs/tables/formulas). Do not fabricate content that does not exist in the image."
)
PROMPTS = TaskPrompts(
    "glm-ocr",
    {
        "document": DOCUMENT,
        "ocr": "Text Recognition:",
        "free": "Text Recognition:",
        "table": "Table Recognition:",
        "formula": "Formula Recognition:",
        "freeform": None,  # information extraction: the client's JSON schema prompt
    },
)
