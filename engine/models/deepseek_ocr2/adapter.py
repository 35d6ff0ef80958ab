"""The ``deepseek-ocr-2`` adapter: transformers' ``DeepseekOcr2ForConditionalGeneration``, run as upstream runs it.

Generation follows DeepSeek's own runners (``DeepSeek-OCR2-vllm/run_dpsk_ocr2_{image,pdf}.py``):
greedy, stop and padding ids taken from the tokenizer and passed explicitly (whatever the folder's
``generation_config.json`` says, or lacks), up to 8192 new tokens within the model's context, the
no-repeat-n-gram guard (``ngram``) plus a last-resort loop stop (``repetition``). Several requests
run as one left-padded ``generate`` call whose rows give exactly what each request gives alone.

Adapter options (``--model-option deepseek-ocr-2.KEY=VALUE``):

- ``model_path`` (hub id or folder, default ``deepseek-community/DeepSeek-OCR-2``), ``cache_dir``;
- ``max_new_tokens`` (8192): the default and the cap of a request's ``max_tokens``;
- ``ngram_size`` (20; 0 turns the guard off), ``ngram_window`` (90, images), ``ngram_window_pdf`` (50,
  requests with ``source=pdf``), ``ngram_whitelist`` (comma-separated tokens, default
  ``<td>,</td>,<tr>,</tr>``: those the tokenizer has as single tokens);
- ``repeat_run`` (1024; 0 turns the loop stop off), ``repeat_max_period`` (512), ``repeat_every`` (32);
- ``max_prompt_tokens`` (1024): longest custom prompt; ``max_batch`` (8): requests per ``generate``;
  ``max_batch_tokens`` (80000): the tokens of KV cache one ``generate`` may hold, rows x (longest
  prompt + largest token limit); a batch over it runs as several (8 full pages fit by default).

Request options: ``prompt_type``, ``find_term``, ``custom_prompt``, ``grounding``, ``max_tokens``,
``source`` (``image`` or ``pdf``: the n-gram window upstream uses for it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ipc.cache import cache_root

from ..base import BadInput, ModelAdapter, PartialCallback
from . import checkpoint
from .batch import PreparedRequest, collate, int_option, token_groups
from .grounding import parse_grounding
from .ngram import NoRepeatNGram
from .prompts import MARKUP, PROMPT_TYPES, build_prompt
from .repetition import RowStops, cut_repetition, repeating_period
from .streaming import RowTextStreamer

log = logging.getLogger("dsocr.engine.deepseek_ocr2")

# upstream whitelists <td>, </td> (ids 128821, 128822); its tokenizer also has <tr>, </tr> as single
# tokens, and without them a blank table's rows (18 tokens each) repeat 20-grams from the 3rd row on
DEFAULT_WHITELIST = "<td>,</td>,<tr>,</tr>"
SOURCES = {"image": "ngram_window", "pdf": "ngram_window_pdf"}


class DeepseekOcr2Adapter(ModelAdapter):
    name = "deepseek-ocr-2"
    prompt_types = PROMPT_TYPES

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        opts = self.options
        self.model_path = str(opts.get("model_path") or checkpoint.DEFAULT_MODEL)
        self.max_new_tokens = int_option(opts, "max_new_tokens", 8192, minimum=1)
        self.ngram_size = int_option(opts, "ngram_size", 20)
        self.windows = {
            "image": int_option(opts, "ngram_window", 90, minimum=1),
            "pdf": int_option(opts, "ngram_window_pdf", 50, minimum=1),
        }
        self.whitelist_tokens = [t.strip() for t in str(opts.get("ngram_whitelist", DEFAULT_WHITELIST)).split(",")]
        self.repeat_run = int_option(opts, "repeat_run", 1024)
        self.repeat_max_period = int_option(opts, "repeat_max_period", 512, minimum=1)
        self.repeat_every = int_option(opts, "repeat_every", 32, minimum=1)
        self.max_prompt_tokens = int_option(opts, "max_prompt_tokens", 1024, minimum=1)
        self.max_batch = int_option(opts, "max_batch", 8, minimum=1)
        self.max_batch_tokens = int_option(opts, "max_batch_tokens", 80_000, minimum=1)
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
        return cache_root(self.options)

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
        if self.processor is None:
            self.processor = self._load_processor()
        module.generation_config = self._generation_config()

    def _load_processor(self) -> Any:
        from transformers import AutoTokenizer, DeepseekOcr2Processor

        from .preprocess import UpstreamImageProcessor

        folder = self.folder()
        # the PIL image processor, also where torchvision exists: upstream preprocesses with PIL,
        # and the results must not depend on the host; its global view placed as upstream's
        return DeepseekOcr2Processor.from_pretrained(
            folder,
            image_processor=UpstreamImageProcessor.from_pretrained(folder),
            tokenizer=AutoTokenizer.from_pretrained(folder),
        )

    def _generation_config(self, max_new_tokens: int | None = None) -> Any:
        """Greedy, with the tokenizer's ids: a folder's generation_config.json (or its absence) changes nothing."""
        from transformers import GenerationConfig

        tok = self.processor.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return GenerationConfig(
            do_sample=False, num_beams=1, use_cache=True, max_new_tokens=max_new_tokens or self.max_new_tokens,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=pad,
        )  # fmt: skip

    # -- requests -------------------------------------------------------------------------

    def _forbidden(self) -> tuple[str, ...]:
        tok = self.processor.tokenizer
        return tuple(dict.fromkeys((*MARKUP, *tok.all_special_tokens)))

    def _whitelist_ids(self) -> list[int]:
        vocab = self.processor.tokenizer.get_vocab()
        return [vocab[t] for t in self.whitelist_tokens if t in vocab]

    def prepare(self, image: np.ndarray, options: dict[str, Any], max_positions: int) -> PreparedRequest:
        """One request checked and preprocessed alone; BadInput says what is wrong with it."""
        prompt = build_prompt(options, self._forbidden())
        source = str(options.get("source") or "image")
        if source not in SOURCES:
            raise BadInput(f"option 'source' must be one of {', '.join(SOURCES)}, not {source!r}")
        tokenizer = self.processor.tokenizer
        text_tokens = len(tokenizer(prompt.text, add_special_tokens=False).input_ids)
        if text_tokens > self.max_prompt_tokens:
            raise BadInput(f"the prompt has {text_tokens} tokens; this model takes at most {self.max_prompt_tokens}")
        inputs = self.processor(images=Image.fromarray(image), text=prompt.text, return_tensors="pt")
        input_ids = inputs["input_ids"][0]
        room = max_positions - input_ids.shape[0]
        if room < 1:
            raise BadInput(f"the prompt ({input_ids.shape[0]} tokens with the image) leaves no room in the "
                           f"model's context of {max_positions} tokens")  # fmt: skip
        requested = int_option(options, "max_tokens", self.max_new_tokens, minimum=1)
        h, w = image.shape[:2]
        return PreparedRequest(
            prompt=prompt,
            input_ids=input_ids,
            pixel_values=inputs["pixel_values"],
            pixel_values_local=inputs.get("pixel_values_local"),
            max_tokens=min(requested, self.max_new_tokens, room),
            window=self.windows[source],
            width=w,
            height=h,
        )

    # -- inference ------------------------------------------------------------------------

    def batch_limit(self, device: torch.device) -> int:
        return self.max_batch

    def infer(
        self, module: torch.nn.Module, image: np.ndarray, options: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        (result,) = self.infer_batch(module, [image], [options], device)
        if isinstance(result, Exception):
            raise result
        return result

    def infer_batch(
        self,
        module: torch.nn.Module,
        images: list[np.ndarray],
        options: list[dict[str, Any]],
        device: torch.device,
        on_partial: PartialCallback | None = None,
    ) -> list[dict[str, Any] | Exception]:
        results: list[dict[str, Any] | Exception | None] = [None] * len(images)
        prepared: list[PreparedRequest] = []
        rows: list[int] = []  # request index of each prepared row
        max_positions = int(module.config.text_config.max_position_embeddings)
        for i, (image, opts) in enumerate(zip(images, options)):
            try:
                prepared.append(self.prepare(image, opts, max_positions))
                rows.append(i)
            except Exception as exc:  # this request alone fails
                results[i] = exc
        answers: list[dict[str, Any] | Exception] = []
        for start, group in token_groups(prepared, self.max_batch_tokens):
            partial = None
            if on_partial is not None:
                partial = lambda row, text, start=start: on_partial(rows[start + row], text)  # noqa: E731
            try:
                answers += self._generate(module, group, device, partial)
            except Exception as exc:  # the group as a whole failed (out of memory...): each row says so
                log.exception("deepseek-ocr-2: generate failed for a batch of %d", len(group))
                answers += [exc] * len(group)
        for i, answer in zip(rows, answers):
            results[i] = answer
        return results  # type: ignore[return-value]

    def _generate(
        self, module: torch.nn.Module, requests: list[PreparedRequest], device: torch.device,
        on_partial: PartialCallback | None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        tokenizer = self.processor.tokenizer
        limits = [r.max_tokens for r in requests]
        config = self._generation_config(max(limits))
        dtype = next(module.parameters()).dtype
        inputs = collate(requests, config.pad_token_id, device, dtype)
        width = inputs["input_ids"].shape[1]
        stops = RowStops(width, limits, device, self.repeat_run, self.repeat_max_period, self.repeat_every)
        processors = []
        if self.ngram_size > 1:
            processors.append(
                NoRepeatNGram(width, self.ngram_size, [r.window for r in requests], self._whitelist_ids(), device)
            )
        specials = {config.eos_token_id, config.pad_token_id, config.bos_token_id} - {None}
        streamer = None
        if on_partial is not None:
            streamer = RowTextStreamer(tokenizer, len(requests), on_partial, config.eos_token_id, specials)
        from transformers import LogitsProcessorList, StoppingCriteriaList

        with torch.inference_mode():
            output = module.generate(
                **inputs,
                generation_config=config,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([stops]),
                streamer=streamer,
            )
        generated = output[:, width:].tolist()  # one transfer for the whole batch
        stopped_at, looped = stops.stopped_at.tolist(), stops.looped.tolist()
        return [
            self._result(request, ids, stopped_at[row], looped[row], config.eos_token_id, specials)
            for row, (request, ids) in enumerate(zip(requests, generated))
        ]

    def _result(
        self, request: PreparedRequest, ids: list[int], stopped_at: int, looped: bool, eos: int, specials: set[int]
    ) -> dict[str, Any]:
        if stopped_at >= 0:
            ids = ids[:stopped_at]  # what follows a per-row stop is padding
        if eos in ids:
            cut = ids.index(eos)
            finish, completion, ids = "stop", cut + 1, ids[:cut]
        elif looped:
            period = repeating_period(ids, self.repeat_run, self.repeat_max_period)
            finish, completion = "repetition", len(ids)
            ids = cut_repetition(ids, period) if period else ids
        else:
            finish, completion = "length", len(ids)
        # stop, padding and start tokens go by id, where they are special: text that spells them stays
        raw = self.processor.tokenizer.decode([t for t in ids if t not in specials], skip_special_tokens=False)
        grounded = parse_grounding(raw, request.width, request.height, keep_labels=request.prompt.keep_labels)
        prompt_tokens = int(request.input_ids.shape[0])
        return {
            "text": grounded.text,
            "raw_text": raw,
            "lines": grounded.lines,
            "boxes": grounded.boxes,
            "prompt": request.prompt.text,
            "finish_reason": finish,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }
