"""GLM-OCR's preprocessing without its processor class: ``Glm46VProcessor`` insists on a video
processor, and transformers has that only with torchvision (which does not import beside the CPU
torch). This does what its ``__call__`` does for one image: the PIL image processor's patches and
``image_grid_thw``, the prompt's one ``<|image|>`` expanded to ``t*h*w / merge**2`` tokens, and
``mm_token_type_ids`` 1 on those tokens (0 elsewhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


class GlmOcrProcessor:
    def __init__(self, image_processor: Any, tokenizer: Any) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    @classmethod
    def from_pretrained(cls, folder: Path) -> GlmOcrProcessor:
        from transformers import AutoTokenizer, Glm46VImageProcessorPil

        tokenizer = AutoTokenizer.from_pretrained(folder)
        template = Path(folder) / "chat_template.jinja"
        if tokenizer.chat_template is None and template.is_file():
            tokenizer.chat_template = template.read_text()
        return cls(Glm46VImageProcessorPil.from_pretrained(folder), tokenizer)

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def __call__(self, images: Image.Image, text: str, return_tensors: str = "pt") -> dict[str, Any]:
        pixels = self.image_processor(images=[images], return_tensors=return_tensors)
        count = int(pixels["image_grid_thw"][0].prod()) // self.image_processor.merge_size**2
        if text.count(self.image_token) != 1:
            raise ValueError(f"GLM-OCR prompts hold one {self.image_token}, not {text.count(self.image_token)}")
        tokens = self.tokenizer(
            text.replace(self.image_token, self.image_token * count),
            add_special_tokens=False,
            return_tensors=return_tensors,
        )
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "mm_token_type_ids": (tokens["input_ids"] == self.image_token_id).long(),
            "pixel_values": pixels["pixel_values"],
            "image_grid_thw": pixels["image_grid_thw"],
        }
