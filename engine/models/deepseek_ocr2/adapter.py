"""The ``deepseek-ocr-2`` adapter: transformers' ``DeepseekOcr2ForConditionalGeneration``.

Adapter options (``--model-option deepseek-ocr-2.KEY=VALUE``): ``model_path`` (hub id or folder,
default ``deepseek-community/DeepSeek-OCR-2``), ``max_new_tokens`` (4096), ``repeat_window`` (256
generated tokens; 0 turns the loop guard off), ``no_repeat_ngram_size`` (0: off), ``cache_dir``.
Request options: ``prompt_type``, ``find_term``, ``custom_prompt``, ``grounding``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..base import BadInput, ModelAdapter
from ..grounding import parse_grounding, strip_end_tokens
from . import checkpoint
from .prompts import PROMPT_TYPES, build_prompt
from .repetition import RepetitionStop, cut_repetition


def _int_option(options: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(options.get(name, default))
    except (TypeError, ValueError):
        raise BadInput(f"option {name!r} must be an integer, not {options[name]!r}") from None


class DeepseekOcr2Adapter(ModelAdapter):
    name = "deepseek-ocr-2"
    prompt_types = PROMPT_TYPES

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.model_path = str(self.options.get("model_path") or checkpoint.DEFAULT_MODEL)
        self.max_new_tokens = _int_option(self.options, "max_new_tokens", 4096)
        self.repeat_window = _int_option(self.options, "repeat_window", 256)
        self.no_repeat_ngram_size = _int_option(self.options, "no_repeat_ngram_size", 0)
        self._folder: Path | None = None
        self._config: Any = None
        self.processor: Any = None  # loaded in after_bind, kept across offload/restore

    # -- weights and skeleton -------------------------------------------------------------

    def folder(self, download: bool = False) -> Path:
        if self._folder is None:
            self._folder = checkpoint.resolve_folder(self.model_path, download=download)
        return self._folder

    def config(self) -> Any:
        if self._config is None:
            from transformers import DeepseekOcr2Config

            self._config = DeepseekOcr2Config.from_pretrained(self.folder())
        return self._config

    def _cache_root(self) -> Path:
        root = self.options.get("cache_dir") or os.environ.get("DSOCR_CACHE_DIR") or "~/.cache/dsocr"
        return Path(root).expanduser()

    def weight_files(self) -> list[Path]:
        folder = self.folder(download=True)
        files = checkpoint.safetensors_files(folder)
        expected = set(self.build_skeleton().state_dict())
        if checkpoint.tensor_names(files) == expected:
            return files  # native names: bind the checkpoint as it is
        target = checkpoint.converted_path(self._cache_root(), folder, files)
        if not target.is_file() or checkpoint.tensor_names([target]) != expected:
            checkpoint.convert(folder, target, expected)
        return [target]

    def build_skeleton(self) -> torch.nn.Module:
        from transformers import DeepseekOcr2ForConditionalGeneration

        with torch.device("meta"):
            module = DeepseekOcr2ForConditionalGeneration(self.config())
        return module.eval()

    def dtype_for(self, device: torch.device) -> torch.dtype | None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32

    def after_bind(self, module: torch.nn.Module, device: torch.device) -> None:
        # rotary tables are non-persistent buffers: not in the segment, still on `meta` after
        # load_state_dict; compute them again on the device, the way the module's __init__ does
        for sub in module.modules():
            if getattr(sub, "inv_freq", None) is not None and sub.inv_freq.is_meta:
                with torch.device(device):
                    fresh = type(sub)(config=sub.config)
                for name, buffer in fresh.named_buffers(recurse=False):
                    setattr(sub, name, buffer)
                sub.attention_scaling = fresh.attention_scaling
        module.tie_weights()  # a no-op unless the config ties lm_head to the embeddings
        module.generation_config = self._generation_config()
        if self.processor is None:
            self.processor = self._load_processor()

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        folder = self.folder()
        if (folder / "generation_config.json").is_file():
            return GenerationConfig.from_pretrained(folder)
        return GenerationConfig.from_model_config(self.config())

    def _load_processor(self) -> Any:
        from transformers import AutoTokenizer, DeepseekOcr2ImageProcessorPil, DeepseekOcr2Processor

        folder = self.folder()
        # the PIL image processor, also where torchvision exists: upstream preprocesses with PIL,
        # and the results must not depend on the host
        return DeepseekOcr2Processor.from_pretrained(
            folder,
            image_processor=DeepseekOcr2ImageProcessorPil.from_pretrained(folder),
            tokenizer=AutoTokenizer.from_pretrained(folder),
        )

    # -- inference ------------------------------------------------------------------------

    def infer(
        self, module: torch.nn.Module, image: np.ndarray, options: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        prompt = build_prompt(options)
        tokenizer = self.processor.tokenizer
        inputs = self.processor(images=Image.fromarray(image), text=prompt.text, return_tensors="pt")
        dtype = next(module.parameters()).dtype
        inputs = {
            k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if torch.is_tensor(v) else v
            for k, v in inputs.items()
        }
        prompt_length = inputs["input_ids"].shape[1]
        stop = RepetitionStop(prompt_length, window=self.repeat_window)
        with torch.inference_mode():
            output = module.generate(
                **inputs,
                do_sample=False,
                num_beams=1,
                max_new_tokens=self.max_new_tokens,
                no_repeat_ngram_size=self.no_repeat_ngram_size or None,
                stopping_criteria=[stop] if self.repeat_window > 0 else None,
                use_cache=True,
            )
        generated = output[0, prompt_length:].tolist()
        ends = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        if 0 in stop.periods:
            finish = "repetition"
            generated = cut_repetition(generated, stop.periods[0])
        elif generated and generated[-1] in ends:
            finish = "stop"
        else:
            finish = "length"
        while generated and generated[-1] in ends:
            generated.pop()
        raw = tokenizer.decode(generated, skip_special_tokens=False)
        raw = strip_end_tokens(raw, (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token)).strip()
        h, w = image.shape[:2]
        grounded = parse_grounding(raw, w, h, keep_labels=prompt.keep_labels)
        return {
            "text": grounded.text,
            "raw_text": raw,
            "lines": grounded.lines,
            "boxes": grounded.boxes,
            "prompt": prompt.text,
            "finish_reason": finish,
            "tokens": {"prompt": prompt_length, "generated": len(generated)},
        }
