"""The ``deepseek-ocr-2`` adapter: transformers' ``DeepseekOcr2ForConditionalGeneration``, run as upstream runs it.

Generation (``engine/models/vlm``) follows DeepSeek's own runners
(``DeepSeek-OCR2-vllm/run_dpsk_ocr2_{image,pdf}.py``): greedy, stop and padding ids taken from the
tokenizer, up to 8192 new tokens within the model's context, the no-repeat-n-gram guard (n 20,
window 90 for images and 50 for PDF pages) plus the last-resort loop stop. What is DeepSeek's
here: its processor (with upstream's global-view placement, ``preprocess``), its prompts
(``prompts``), its grounding output (``grounding``; ``image`` spans become figure crops), and a
raw ``deepseek-ai/DeepSeek-OCR-2`` folder converted once (``upstream``).

Adapter options (``--model-option deepseek-ocr-2.KEY=VALUE``): ``model_path`` (hub id or folder,
default ``deepseek-community/DeepSeek-OCR-2``), ``cache_dir``, and every field of
``vlm.generation.GenerationDefaults``; ``ngram_whitelist`` defaults to ``<td>,</td>,<tr>,</tr>``.

Request options: ``prompt_type`` (default ``document``), ``find_term``, ``custom_prompt``,
``grounding``, ``max_tokens``, ``source`` (``image`` or ``pdf``: the n-gram window upstream uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.figures import crop_figure

from ..base import Unsupported
from ..vlm import GenerationDefaults, PreparedRequest, Prompt, VlmAdapter
from . import upstream
from .grounding import parse_grounding
from .prompts import MARKUP, PROMPTS, build_prompt, labels_are_content

# upstream whitelists <td>, </td> (ids 128821, 128822); its tokenizer also has <tr>, </tr> as single
# tokens, and without them a blank table's rows (18 tokens each) repeat 20-grams from the 3rd row on
DEFAULT_WHITELIST = "<td>,</td>,<tr>,</tr>"


class DeepseekOcr2Adapter(VlmAdapter):
    name = "deepseek-ocr-2"
    default_model = "deepseek-community/DeepSeek-OCR-2"
    config_class = "DeepseekOcr2Config"
    model_class = "DeepseekOcr2ForConditionalGeneration"
    generation_defaults = GenerationDefaults(ngram_whitelist=DEFAULT_WHITELIST)

    def folder(self, download: bool = False) -> Path:
        if self._folder is None:
            # a raw upstream folder (deepseek_vl_v2 config, upstream tensor names) is converted once
            self._folder = upstream.native_folder(super().folder(download), self.options)
        return self._folder

    def load_processor(self, folder: Path) -> Any:
        from transformers import AutoTokenizer, DeepseekOcr2Processor

        from .preprocess import UpstreamImageProcessor

        # the PIL image processor, also where torchvision exists: upstream preprocesses with PIL,
        # and the results must not depend on the host; its global view placed as upstream's
        return DeepseekOcr2Processor.from_pretrained(
            folder,
            image_processor=UpstreamImageProcessor.from_pretrained(folder),
            tokenizer=AutoTokenizer.from_pretrained(folder),
        )

    def forbidden_tokens(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*MARKUP, *self.processor.tokenizer.all_special_tokens)))

    def build_prompt(self, prompt_type: str, options: dict[str, Any]) -> Prompt:
        if prompt_type not in PROMPTS:
            raise Unsupported(f"unknown prompt_type {prompt_type!r} for {self.name}")
        return build_prompt({**options, "prompt_type": prompt_type}, self.forbidden_tokens())

    def postprocess(self, raw: str, request: PreparedRequest) -> dict[str, Any]:
        keep_labels = labels_are_content(request.prompt.prompt_type)
        grounded = parse_grounding(raw, request.width, request.height, keep_labels=keep_labels)
        figures: dict[int, dict[str, Any]] = {}
        for box in grounded.boxes:
            if "figure" in box and box["figure"] not in figures and request.image is not None:
                figures[box["figure"]] = crop_figure(request.image, box["box"], box["figure"])
        return {
            "text": grounded.text,
            "lines": grounded.lines,
            "boxes": grounded.boxes,
            "figures": list(figures.values()),
        }
