"""The ``glm-ocr`` adapter: transformers' ``GlmOcrForConditionalGeneration`` (zai-org/GLM-OCR, 0.9B).

Generation as the model card's transformers example runs it: greedy, up to 8192 new tokens, ended
by either of the config's two end ids (``<|endoftext|>``, ``<|user|>``). The GLM-OCR SDK samples
(temperature 0.8, top-p 0.9, repetition penalty 1.1) behind vLLM; dsocr stays greedy so that a
batch gives exactly what each request gives alone, and keeps its last-resort loop stop in place of
the penalty. No n-gram guard by default (upstream has none; ``ngram_size`` turns one on). Image
limits are the folder's ``preprocessor_config.json`` (the real one: 12,544 to 9,633,792 pixels).

Adapter options: ``model_path`` (default ``zai-org/GLM-OCR``), ``cache_dir`` and the generation
settings of ``engine.models.vlm.generation.GenerationDefaults``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..task_prompts import stop_ids
from ..vlm.adapter import VlmAdapter
from ..vlm.generation import GenerationDefaults
from ..vlm.prompts import Prompt
from .processor import GlmOcrProcessor
from .prompts import PROMPTS


class GlmOcrAdapter(VlmAdapter):
    name = "glm-ocr"
    default_model = "zai-org/GLM-OCR"
    config_class = "GlmOcrConfig"
    model_class = "GlmOcrForConditionalGeneration"
    generation_defaults = GenerationDefaults(max_new_tokens=8192, ngram_size=0)

    def load_processor(self, folder: Path) -> Any:
        return GlmOcrProcessor.from_pretrained(folder)

    def build_prompt(self, prompt_type: str, options: dict[str, Any]) -> Prompt:
        return PROMPTS.build(self.processor, prompt_type, options, self.forbidden_tokens())

    def stop_token_ids(self) -> list[int]:
        return stop_ids(self.processor.tokenizer, self.config())
