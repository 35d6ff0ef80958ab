"""What every adapter's prompt building shares: the built prompt, and checks of client text.

Options arrive as HTTP form fields, so every value may be a string: a switch accepts
``true/false/1/0/yes/no/on/off`` as well as booleans. Text from the client must not smuggle the
model's control tokens into the prompt (an image token in ``find_term`` would ask for a second
image; an end token would end the prompt): a field that holds one is refused with a 400 that
names it (:func:`check_text`, with the adapter's ``forbidden_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..base import BadInput

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True)
class Prompt:
    """A request's prompt: ``text`` is what the processor gets (chat template applied, if any)."""

    prompt_type: str
    text: str
    grounding: bool = False
    # whatever the adapter's post-processing needs to know about the prompt
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


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


def required_text(options: dict[str, Any], name: str, prompt_type: str, what: str, forbidden: tuple[str, ...]) -> str:
    """The stripped, checked client text ``options[name]`` that ``prompt_type`` needs."""
    text = str(options.get(name) or "").strip()
    if not text:
        raise BadInput(f"prompt_type {prompt_type!r} needs a non-empty {name!r} ({what})")
    check_text(name, text, forbidden)
    return text
