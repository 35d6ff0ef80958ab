"""Prompt types -> DeepSeek-OCR prompts (the upstream README's), and the request options they use.

Client text is checked as every VLM's is (``vlm.prompts``): no control token. A custom prompt
may start with ``<image>`` and ``<|grounding|>`` (upstream's prompts do) and may use
``<|ref|>...<|/ref|>`` (upstream's locate prompt), nothing else.
"""

from __future__ import annotations

from typing import Any

from ipc.catalog import MODELS

from ..base import BadInput, Unsupported
from ..vlm.prompts import Prompt, check_text, parse_bool, required_text

__all__ = ["PROMPTS", "PROMPT_TYPES", "DeepseekPrompt", "build_prompt", "labels_are_content", "parse_bool"]

IMAGE = "<image>"
GROUNDING = "<|grounding|>"
REF_TAGS = ("<|ref|>", "<|/ref|>")
# markup tokens of DeepSeek-OCR's tokenizer, refused in client text besides the tokenizer's own specials
MARKUP = (IMAGE, GROUNDING, *REF_TAGS, "<|det|>", "<|/det|>")

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
DEFAULT_PROMPT_TYPE = MODELS["deepseek-ocr-2"].default_prompt_type


def labels_are_content(prompt_type: str) -> bool:
    """Whether ``<|ref|>`` labels are content (all but ``document``; see ``grounding``)."""
    return prompt_type != "document"


class DeepseekPrompt(Prompt):
    @property
    def keep_labels(self) -> bool:
        return labels_are_content(self.prompt_type)


def _custom_instruction(custom: str, forbidden: tuple[str, ...]) -> tuple[str, bool]:
    """A custom prompt without its leading ``<image>`` / ``<|grounding|>``, and whether it had the latter."""
    text = custom.strip()
    if text.startswith(IMAGE):
        text = text[len(IMAGE) :].lstrip()
    grounding = text.startswith(GROUNDING)
    if grounding:
        text = text[len(GROUNDING) :].lstrip()
    check_text("custom_prompt", text, tuple(t for t in forbidden if t not in REF_TAGS))
    return text, grounding


def build_prompt(options: dict[str, Any], forbidden: tuple[str, ...] = MARKUP) -> DeepseekPrompt:
    """The prompt for a request's ``prompt_type`` (default: the catalog's, ``document``) and its options.

    ``forbidden``: the tokens client text may not hold (the adapter adds its tokenizer's specials).
    """
    prompt_type = str(options.get("prompt_type") or DEFAULT_PROMPT_TYPE)
    if prompt_type not in PROMPTS:
        raise Unsupported(f"unknown prompt_type {prompt_type!r} for deepseek-ocr-2; known: {', '.join(PROMPT_TYPES)}")
    instruction, default_grounding = PROMPTS[prompt_type]
    grounding = default_grounding
    if options.get("grounding") is not None:
        grounding = parse_bool("grounding", options["grounding"])
    if prompt_type == "find":
        term = required_text(options, "find_term", prompt_type, "what to locate", forbidden)
        instruction = instruction.format(term=term)
    elif prompt_type == "freeform":
        custom = str(options.get("custom_prompt") or "").strip()
        if not custom:
            raise BadInput("prompt_type 'freeform' needs a non-empty 'custom_prompt'")
        instruction, has_grounding = _custom_instruction(custom, forbidden)
        if not instruction:
            raise BadInput("'custom_prompt' has no instruction besides <image> / <|grounding|>")
        if options.get("grounding") is None:
            grounding = has_grounding
    text = f"{IMAGE}\n{GROUNDING if grounding else ''}{instruction}"
    return DeepseekPrompt(prompt_type, text, grounding)
