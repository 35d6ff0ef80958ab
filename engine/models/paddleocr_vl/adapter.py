"""The ``paddleocr-vl`` adapter: transformers' ``PaddleOCRVLForConditionalGeneration``
(PaddlePaddle/PaddleOCR-VL-1.5, 0.9B: a NaViT-style encoder and ERNIE-4.5-0.3B).

Preprocessing is transformers' PIL image processor (``PaddleOCRVLImageProcessorPil``), also where
torchvision exists, so results do not depend on the host; image limits are the folder's
``preprocessor_config.json`` (transformers' defaults: 147,384 to 2,359,296 pixels). Generation is
greedy, up to 4096 new tokens, ended by the tokenizer's ``</s>``; no n-gram guard by default
(table answers repeat their cell tokens; upstream has none), the last-resort loop stop on. Table answers (OTSL cell tags) become HTML in ``text`` (``otsl``).

Adapter options: ``model_path`` (default ``PaddlePaddle/PaddleOCR-VL-1.5``; ``PaddlePaddle/PaddleOCR-VL``
is 1.0, without ``ocr``/``seal``), ``cache_dir`` and the settings of ``GenerationDefaults``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from ..task_prompts import stop_ids
from ..task_spotting import paddle_spotting
from ..vlm.adapter import VlmAdapter
from ..vlm.batch import PreparedRequest
from ..vlm.generation import GenerationDefaults
from ..vlm.prompts import Prompt
from .otsl import to_html
from .prompts import PROMPTS


class PaddleOcrVlAdapter(VlmAdapter):
    name = "paddleocr-vl"
    default_model = "PaddlePaddle/PaddleOCR-VL-1.5"
    config_class = "PaddleOCRVLConfig"
    model_class = "PaddleOCRVLForConditionalGeneration"
    generation_defaults = GenerationDefaults(max_new_tokens=4096, ngram_size=0)

    def load_processor(self, folder: Path) -> Any:
        from transformers import AutoTokenizer, PaddleOCRVLImageProcessorPil, PaddleOCRVLProcessor

        return PaddleOCRVLProcessor.from_pretrained(
            folder,
            image_processor=PaddleOCRVLImageProcessorPil.from_pretrained(folder),
            tokenizer=AutoTokenizer.from_pretrained(folder),
        )

    def make_inputs(self, image: Image.Image, prompt: Prompt) -> dict[str, Any]:
        # the chat template already starts with <|begin_of_sentence|>: no second one (as
        # apply_chat_template(tokenize=True), the model card's way, tokenizes it)
        return dict(self.processor(images=image, text=prompt.text, add_special_tokens=False, return_tensors="pt"))

    def build_prompt(self, prompt_type: str, options: dict[str, Any]) -> Prompt:
        return PROMPTS.build(self.processor, prompt_type, options, self.forbidden_tokens())

    def stop_token_ids(self) -> list[int]:
        return stop_ids(self.processor.tokenizer, self.config())

    def postprocess(self, raw: str, request: PreparedRequest) -> dict[str, Any]:
        if request.prompt.prompt_type == "ocr":
            return paddle_spotting(raw, request.width, request.height)
        result = super().postprocess(raw, request)
        if request.prompt.prompt_type == "table":  # OTSL cell tags -> HTML, as PaddleX does; raw_text keeps them
            result["text"] = to_html(raw) or result["text"]
        return result
