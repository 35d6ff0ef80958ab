"""Fixed task prompts through a checkpoint's chat template: what the GLM-OCR, PaddleOCR-VL and
HunyuanOCR adapters share.

Each of these models is trained on a few fixed instructions (its model card's task prompts) put
after one image in a user turn of its chat template. dsocr's prompt types map onto them
(``TaskPrompts``); a ``None`` instruction takes the client's ``custom_prompt``. The template is the
checkpoint's own (``chat_template.jinja`` or the tokenizer's), so a real folder is prompted exactly
as its authors' code prompts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Unsupported
from .vlm.prompts import Prompt, required_text


@dataclass(frozen=True)
class TaskPrompts:
    model: str
    instructions: dict[str, str | None]  # prompt type -> the model's instruction (None: custom)

    def instruction(self, prompt_type: str, options: dict[str, Any], forbidden: tuple[str, ...]) -> str:
        if prompt_type not in self.instructions:
            raise Unsupported(
                f"unknown prompt_type {prompt_type!r} for {self.model}; known: {', '.join(self.instructions)}"
            )
        fixed = self.instructions[prompt_type]
        if fixed is not None:
            return fixed
        return required_text(options, "custom_prompt", prompt_type, "the instruction to send", forbidden)

    def build(
        self, template_owner: Any, prompt_type: str, options: dict[str, Any], forbidden: tuple[str, ...]
    ) -> Prompt:
        """The chat-templated prompt text for one image and the prompt type's instruction."""
        instruction = self.instruction(prompt_type, options, forbidden)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        text = template_owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return Prompt(prompt_type, text, extra={"instruction": instruction})


def stop_ids(tokenizer: Any, config: Any) -> list[int]:
    """The tokenizer's end token, then every end id the text config lists (GLM-OCR has two)."""
    text_config = getattr(config, "text_config", config)
    listed = getattr(text_config, "eos_token_id", None)
    listed = listed if isinstance(listed, (list, tuple)) else [listed]
    ids = [tokenizer.eos_token_id, *listed]
    return list(dict.fromkeys(i for i in ids if i is not None))
