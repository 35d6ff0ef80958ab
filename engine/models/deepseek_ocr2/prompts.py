"""Prompt types -> DeepSeek-OCR prompts (the upstream README's), and the request options they use.

Options arrive as HTTP form fields, so every value may be a string: ``grounding`` accepts
``true/false/1/0/yes/no/on/off`` as well as booleans.

Text from the client must not smuggle the model's control tokens into the prompt (an ``<image>``
in ``find_term`` would ask for a second image; an end token would end the prompt): a field that
holds one is refused with a 400 that names it. A custom prompt may start with ``<image>`` and
``<|grounding|>`` (upstream's prompts do) and may use ``<|ref|>...<|/ref|>`` (upstream's locate
prompt), nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import BadInput, Unsupported

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
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True)
class Prompt:
    prompt_type: str
    text: str
    grounding: bool

    @property
    def keep_labels(self) -> bool:
        """Whether ``<|ref|>`` labels are content (see ``grounding``)."""
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


def check_text(name: str, value: str, forbidden: tuple[str, ...]) -> None:
    """BadInput naming the first control token ``value`` holds."""
    for token in forbidden:
        if token and token in value:
            raise BadInput(f"{name!r} must not contain the model's special token {token!r}")


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


def build_prompt(options: dict[str, Any], forbidden: tuple[str, ...] = MARKUP) -> Prompt:
    """The prompt for a request's ``prompt_type`` (default ``ocr``) and its options.

    ``forbidden``: the tokens client text may not hold (the adapter adds its tokenizer's specials).
    """
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
        check_text("find_term", term, forbidden)
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
    return Prompt(prompt_type, text, grounding)
