"""Prompt types -> DeepSeek-OCR prompts (the upstream README's), and the request options they use.

Options arrive as HTTP form fields, so every value may be a string: ``grounding`` accepts
``true/false/1/0/yes/no/on/off`` as well as booleans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import BadInput, Unsupported

IMAGE = "<image>"
GROUNDING = "<|grounding|>"

# prompt type -> (instruction, grounding by default); grounding is inserted after "<image>\n"
PROMPTS: dict[str, tuple[str, bool]] = {
    "document": ("Convert the document to markdown.", True),
    "ocr": ("OCR this image.", True),
    "free": ("Free OCR.", False),
    "figure": ("Parse the figure.", False),
    "describe": ("Describe this image in detail.", False),
    "find": ("Locate <|ref|>{term}<|/ref|> in the image.", False),
    "freeform": ("{custom}", False),
}
PROMPT_TYPES = tuple(PROMPTS)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True)
class Prompt:
    prompt_type: str
    text: str
    grounding: bool

    @property
    def keep_labels(self) -> bool:
        """Whether ``<|ref|>`` labels are content (see ``engine.models.grounding``)."""
        return self.prompt_type != "document"


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadInput(f"option {name!r} must be true or false, not {value!r}")


def build_prompt(options: dict[str, Any]) -> Prompt:
    """The prompt for a request's ``prompt_type`` (default ``ocr``) and its options."""
    prompt_type = str(options.get("prompt_type") or "ocr")
    if prompt_type not in PROMPTS:
        raise Unsupported(f"unknown prompt_type {prompt_type!r} for deepseek-ocr-2; known: {', '.join(PROMPT_TYPES)}")
    instruction, default_grounding = PROMPTS[prompt_type]
    grounding = default_grounding
    if options.get("grounding") is not None:
        grounding = parse_bool("grounding", options["grounding"])
    if prompt_type == "find":
        term = str(options.get("find_term") or "").strip()
        if not term:
            raise BadInput("prompt_type 'find' needs a non-empty 'find_term' (what to locate)")
        instruction = instruction.format(term=term)
    elif prompt_type == "freeform":
        custom = str(options.get("custom_prompt") or "").strip()
        if not custom:
            raise BadInput("prompt_type 'freeform' needs a non-empty 'custom_prompt'")
        instruction = custom.replace(IMAGE, "").replace(GROUNDING, "").strip()
        if not instruction:
            raise BadInput("'custom_prompt' has no instruction besides <image> / <|grounding|>")
        if options.get("grounding") is None:
            grounding = GROUNDING in custom
    text = f"{IMAGE}\n{GROUNDING if grounding else ''}{instruction}"
    return Prompt(prompt_type, text, grounding)
