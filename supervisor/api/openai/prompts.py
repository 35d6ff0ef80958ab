"""The text of an OpenAI chat request -> our request options.

Clients of vLLM's DeepSeek-OCR recipe send the upstream prompt strings (``<image>\\nFree OCR.``,
``<image>\\n<|grounding|>Convert the document to markdown.``...), with or without ``<image>``: each
maps to its prompt type, and so do GLM-OCR's and PaddleOCR-VL's task prompts (``Table Recognition:``...)
for a model that has that type. Other text is a free-form prompt for a model that takes one (the others
read the text of the image, as with no text at all).
"""

from __future__ import annotations

import re
from typing import Any

from ipc.catalog import model_info

IMAGE = "<image>"
GROUNDING = "<|grounding|>"
# DeepSeek-OCR's README prompts (and the upstream web UI's "Free OCR. Only output the raw text.")
INSTRUCTIONS = {
    "convert the document to markdown.": "document",
    "ocr this image.": "ocr",
    "free ocr.": "free",
    "free ocr. only output the raw text.": "free",
    "parse the figure.": "figure",
    "describe this image in detail.": "describe",
}
# GLM-OCR's and PaddleOCR-VL's task prompts (their model cards): the prompt type, for a model that has it
TASKS = {
    "ocr:": "free",
    "text recognition:": "free",
    "table recognition:": "table",
    "formula recognition:": "formula",
    "chart recognition:": "chart",
    "seal recognition:": "seal",
    "spotting:": "ocr",
}
LOCATE = re.compile(r"locate\s*<\|ref\|>(?P<term>.+?)<\|/ref\|>\s*in the image\.?", re.IGNORECASE | re.DOTALL)
PLAIN = "free"  # no text: plain OCR


def options_for(model: str, text: str) -> dict[str, Any]:
    """Request options (``prompt_type`` and what it needs) for ``text`` sent to ``model``."""
    info = model_info(model)
    grounding = GROUNDING in text
    instruction = " ".join(text.replace(IMAGE, " ").replace(GROUNDING, " ").split())
    options: dict[str, Any]
    if not instruction:
        options = {"prompt_type": PLAIN}
    elif instruction.lower() in INSTRUCTIONS:
        options = {"prompt_type": INSTRUCTIONS[instruction.lower()]}
    elif info is not None and TASKS.get(instruction.lower()) in info.prompt_types:
        options = {"prompt_type": TASKS[instruction.lower()]}
    elif match := LOCATE.fullmatch(instruction):
        options = {"prompt_type": "find", "find_term": match["term"].strip()}
    elif info is not None and info.custom_prompt:
        return {"prompt_type": info.custom_prompt[0], "custom_prompt": text}
    else:
        options = {"prompt_type": PLAIN}  # a model without free-form prompts reads the image
    if info is not None and info.grounding:
        options["grounding"] = grounding
    return options
