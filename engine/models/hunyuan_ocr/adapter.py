"""The ``hunyuan-ocr`` adapter: transformers' ``HunYuanVLForConditionalGeneration`` (tencent/HunyuanOCR, 1B).

Preprocessing is transformers' PIL image processor (``HunYuanVLImageProcessorPil``, the one the
transformers integration test loads with ``backend="pil"``); image limits are the folder's
``preprocessor_config.json`` (transformers' defaults: 512 x 512 to 2048 x 2048 pixels). Generation
as upstream's ``run_hy_ocr.py`` runs it: greedy, ended by the tokenizer's end token, up to 16384
new tokens (its vLLM client's ``max_tokens``); upstream then trims a repeated tail
(``clean_repeated_substrings``), which dsocr's loop stop does while generating. No n-gram guard by
default. Each batch row's rotary positions are those of its request alone (``rope``). Spotting
answers (``ocr``) become ``lines`` with boxes in image pixels.

Adapter options: ``model_path`` (default ``tencent/HunyuanOCR``), ``cache_dir`` and the settings of
``GenerationDefaults``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..task_prompts import stop_ids
from ..task_spotting import hunyuan_spotting
from ..vlm.adapter import VlmAdapter
from ..vlm.batch import PreparedRequest
from ..vlm.generation import GenerationDefaults
from ..vlm.prompts import Prompt
from .prompts import PROMPTS
from .rope import per_row


class HunyuanOcrAdapter(VlmAdapter):
    name = "hunyuan-ocr"
    default_model = "tencent/HunyuanOCR"
    config_class = "HunYuanVLConfig"
    model_class = "HunYuanVLForConditionalGeneration"
    generation_defaults = GenerationDefaults(max_new_tokens=16384, ngram_size=0)

    def after_bind(self, module: torch.nn.Module, device: torch.device) -> None:
        super().after_bind(module, device)
        # a batch row's image positioned as that request alone positions it (see ``rope``)
        inner = module.model
        inner.get_rope_index = per_row(type(inner).get_rope_index.__get__(inner))

    def load_processor(self, folder: Path) -> Any:
        from transformers import AutoTokenizer, HunYuanVLImageProcessorPil, HunYuanVLProcessor

        return HunYuanVLProcessor.from_pretrained(
            folder,
            image_processor=HunYuanVLImageProcessorPil.from_pretrained(folder),
            tokenizer=AutoTokenizer.from_pretrained(folder),
        )

    def build_prompt(self, prompt_type: str, options: dict[str, Any]) -> Prompt:
        return PROMPTS.build(self.processor, prompt_type, options, self.forbidden_tokens())

    def stop_token_ids(self) -> list[int]:
        return stop_ids(self.processor.tokenizer, self.config())

    def postprocess(self, raw: str, request: PreparedRequest) -> dict[str, Any]:
        if request.prompt.prompt_type == "ocr":
            return hunyuan_spotting(raw, request.width, request.height)
        return super().postprocess(raw, request)
