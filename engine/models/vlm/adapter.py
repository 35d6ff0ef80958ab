"""``VlmAdapter``: one transformers vision-language model, generated as dsocr generates every VLM.

The base class does the weights (native names bound as they are, other layouts converted once
into ``DSOCR_CACHE_DIR``), the skeleton on ``meta``, the fix-ups after binding, and the whole
request path: each request checked and preprocessed alone, groups within the token budget, one
left-padded greedy ``generate`` per group with the n-gram guard, per-row token limits and the
loop stop, streamed partials, and each row's ``finish_reason`` and ``usage``. A subclass says
what is model-specific; the hooks are listed in the package's ``__init__``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ipc.cache import cache_root
from ipc.catalog import model_info

from ..base import BadInput, ModelAdapter, PartialCallback, Unsupported
from . import checkpoint
from .batch import PreparedRequest, collate, int_option, token_groups
from .generation import SOURCES, GenerationDefaults, finish, generation_config
from .ngram import NoRepeatNGram
from .prompts import Prompt
from .repetition import RowStops
from .streaming import RowTextStreamer

log = logging.getLogger("dsocr.engine.vlm")


class VlmAdapter(ModelAdapter):
    # -- what a subclass supplies (see the package doc) ---------------------------------------
    default_model: ClassVar[str]  # hub id used when no ``model_path`` is given
    config_class: ClassVar[str]  # transformers class names, imported when first used
    model_class: ClassVar[str]
    generation_defaults: ClassVar[GenerationDefaults] = GenerationDefaults()

    def load_processor(self, folder: Path) -> Any:
        """The processor (with ``.tokenizer``) for the checkpoint in ``folder``."""
        raise NotImplementedError

    def build_prompt(self, prompt_type: str, options: dict[str, Any]) -> Prompt:
        """The prompt for one of the catalog's prompt types; Unsupported for one it lacks, BadInput
        for bad client text (check it with ``prompts.check_text`` and ``forbidden_tokens()``)."""
        raise NotImplementedError

    def make_inputs(self, image: Image.Image, prompt: Prompt) -> dict[str, Any]:
        """One request's processor output (batch dimension 1, ``input_ids`` included)."""
        return dict(self.processor(images=image, text=prompt.text, return_tensors="pt"))

    def collate(
        self, requests: list[PreparedRequest], pad_id: int, device: torch.device, dtype: torch.dtype
    ) -> dict[str, Any]:
        """``generate``'s inputs for a group (default: ``batch.collate``, left padding)."""
        return collate(requests, pad_id, device, dtype)

    def stop_token_ids(self) -> list[int]:
        """Ids that end an answer (several allowed); the first is also the padding fallback."""
        return [self.processor.tokenizer.eos_token_id]

    def forbidden_tokens(self) -> tuple[str, ...]:
        """Tokens client text must not hold: the tokenizer's special and special added tokens."""
        tok = self.processor.tokenizer
        added = [t.content for t in getattr(tok, "added_tokens_decoder", {}).values() if t.special]
        return tuple(dict.fromkeys((*tok.all_special_tokens, *added)))

    def postprocess(self, raw: str, request: PreparedRequest) -> dict[str, Any]:
        """Raw answer text -> ``text``, ``lines``, ``boxes`` (image pixels) and ``figures``."""
        return {"text": raw.strip(), "lines": [], "boxes": [], "figures": []}

    def dtype_for(self, device: torch.device) -> torch.dtype | None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32

    def fresh_buffers(self, sub: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """A new instance of ``sub`` on ``device`` whose non-persistent buffers replace its ``meta``
        ones (default: built again from ``sub.config``, as rotary embeddings are)."""
        if not hasattr(sub, "config"):
            raise TypeError(f"{self.name}: cannot rebuild the buffers of {type(sub).__name__}; override fresh_buffers")
        with torch.device(device):
            return type(sub)(config=sub.config)

    def max_positions(self, module: torch.nn.Module) -> int:
        """The context length: prompt plus answer."""
        config = module.config
        return int(getattr(config, "text_config", config).max_position_embeddings)

    # -- the common part -------------------------------------------------------------------------

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.model_path = str(self.options.get("model_path") or self.default_model)
        self.settings = self.generation_defaults.with_options(self.options)
        self._folder: Path | None = None
        self._config: Any = None
        self.processor: Any = None  # loaded in after_bind, kept across offload/restore

    @property
    def max_new_tokens(self) -> int:
        return self.settings.max_new_tokens

    @property
    def default_prompt_type(self) -> str:
        info = model_info(self.name)
        return info.default_prompt_type if info else self.prompt_types[0]

    @staticmethod
    def transformers_class(name: str) -> Any:
        import transformers

        return getattr(transformers, name)

    def folder(self, download: bool = False) -> Path:
        if self._folder is None:
            self._folder = checkpoint.resolve_folder(self.model_path, self.name, download=download)
        return self._folder

    def config(self) -> Any:
        if self._config is None:
            self._config = self.transformers_class(self.config_class).from_pretrained(self.folder())
        return self._config

    def weight_files(self) -> list[Path]:
        folder = self.folder(download=True)
        files = checkpoint.safetensors_files(folder, self.name)
        expected = set(self.build_skeleton().state_dict())
        if checkpoint.tensor_names(files) == expected:
            return files  # native names: bind the checkpoint as it is
        target = checkpoint.converted_path(cache_root(self.options), self.name, folder, files)
        if not target.is_file() or checkpoint.tensor_names([target]) != expected:
            checkpoint.convert(self.transformers_class(self.model_class), self.name, folder, target, expected)
        return [target]

    def build_skeleton(self) -> torch.nn.Module:
        with torch.device("meta"):
            module = self.transformers_class(self.model_class)(self.config())
        return module.eval()

    def after_bind(self, module: torch.nn.Module, device: torch.device) -> None:
        # non-persistent buffers (rotary tables) are not in the segment and still on `meta` after
        # load_state_dict; compute them again on the device, the way the module's __init__ does
        for sub in module.modules():
            metas = [n for n, b in sub.named_buffers(recurse=False) if b is not None and b.is_meta]
            if not metas:
                continue
            fresh = self.fresh_buffers(sub, device)
            for name, buffer in fresh.named_buffers(recurse=False):
                setattr(sub, name, buffer)
            if hasattr(fresh, "attention_scaling"):
                sub.attention_scaling = fresh.attention_scaling
        module.tie_weights()  # a no-op unless the config ties lm_head to the embeddings
        if self.processor is None:
            self.processor = self.load_processor(self.folder())
        module.generation_config = generation_config(
            self.processor.tokenizer, self.stop_token_ids(), self.max_new_tokens
        )

    # -- requests -------------------------------------------------------------------------------

    def prompt_type_of(self, options: dict[str, Any]) -> str:
        """The request's prompt type (the catalog's default when none): Unsupported names those there are."""
        prompt_type = str(options.get("prompt_type") or self.default_prompt_type)
        if prompt_type not in self.prompt_types:
            raise Unsupported(
                f"unknown prompt_type {prompt_type!r} for {self.name}; known: {', '.join(self.prompt_types)}"
            )
        return prompt_type

    def prepare(self, image: np.ndarray, options: dict[str, Any], max_positions: int) -> PreparedRequest:
        """One request checked and preprocessed alone; BadInput says what is wrong with it."""
        prompt = self.build_prompt(self.prompt_type_of(options), options)
        source = str(options.get("source") or "image")
        if source not in SOURCES:
            raise BadInput(f"option 'source' must be one of {', '.join(SOURCES)}, not {source!r}")
        text_tokens = len(self.processor.tokenizer(prompt.text, add_special_tokens=False).input_ids)
        if text_tokens > self.settings.max_prompt_tokens:
            raise BadInput(
                f"the prompt has {text_tokens} tokens; this model takes at most {self.settings.max_prompt_tokens}"
            )
        inputs = self.make_inputs(Image.fromarray(image), prompt)
        length = inputs["input_ids"].shape[-1]
        room = max_positions - length
        if room < 1:
            raise BadInput(f"the prompt ({length} tokens with the image) leaves no room in the "
                           f"model's context of {max_positions} tokens")  # fmt: skip
        requested = int_option(options, "max_tokens", self.max_new_tokens, minimum=1)
        h, w = image.shape[:2]
        return PreparedRequest(
            prompt=prompt,
            inputs=inputs,
            max_tokens=min(requested, self.max_new_tokens, room),
            window=self.settings.window(source),
            width=w,
            height=h,
            image=image,
        )

    def _whitelist_ids(self) -> list[int]:
        vocab = self.processor.tokenizer.get_vocab()
        return [vocab[t] for t in self.settings.whitelist_tokens if t in vocab]

    def _skip_ids(self) -> set[int]:
        """Stop, padding and start ids: no text, by id (text that spells them stays)."""
        tok = self.processor.tokenizer
        return {*self.stop_token_ids(), tok.pad_token_id, tok.bos_token_id} - {None}

    # -- inference ------------------------------------------------------------------------------

    def batch_limit(self, device: torch.device) -> int:
        return self.settings.max_batch

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
        max_positions = self.max_positions(module)
        for i, (image, opts) in enumerate(zip(images, options)):
            try:
                prepared.append(self.prepare(image, opts, max_positions))
                rows.append(i)
            except Exception as exc:  # this request alone fails
                results[i] = exc
        answers: list[dict[str, Any] | Exception] = []
        for start, group in token_groups(prepared, self.settings.max_batch_tokens):
            partial = None
            if on_partial is not None:
                partial = lambda row, text, start=start: on_partial(rows[start + row], text)  # noqa: E731
            try:
                answers += self._generate(module, group, device, partial)
            except Exception as exc:  # the group as a whole failed (out of memory...): each row says so
                log.exception("%s: generate failed for a batch of %d", self.name, len(group))
                answers += [exc] * len(group)
        for i, answer in zip(rows, answers):
            results[i] = answer
        return results  # type: ignore[return-value]

    def _generate(
        self, module: torch.nn.Module, requests: list[PreparedRequest], device: torch.device,
        on_partial: PartialCallback | None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        from transformers import LogitsProcessorList, StoppingCriteriaList

        s = self.settings
        limits = [r.max_tokens for r in requests]
        stop_ids = self.stop_token_ids()
        config = generation_config(self.processor.tokenizer, stop_ids, max(limits))
        dtype = next(module.parameters()).dtype
        inputs = self.collate(requests, config.pad_token_id, device, dtype)
        width = inputs["input_ids"].shape[1]
        stops = RowStops(width, limits, device, s.repeat_run, s.repeat_max_period, s.repeat_every)
        processors = []
        if s.ngram_size > 1:
            windows = [r.window for r in requests]
            processors.append(NoRepeatNGram(width, s.ngram_size, windows, self._whitelist_ids(), device))
        skip = self._skip_ids()
        streamer = None
        if on_partial is not None:
            streamer = RowTextStreamer(self.processor.tokenizer, len(requests), on_partial, set(stop_ids), skip)
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
            self._result(request, ids, stopped_at[row], looped[row], set(stop_ids), skip)
            for row, (request, ids) in enumerate(zip(requests, generated))
        ]

    def _result(
        self, request: PreparedRequest, ids: list[int], stopped_at: int, looped: bool, stop_ids: set[int],
        skip: set[int],
    ) -> dict[str, Any]:  # fmt: skip
        s = self.settings
        ids, finish_reason, completion = finish(ids, stop_ids, stopped_at, looped, s.repeat_run, s.repeat_max_period)
        raw = self.processor.tokenizer.decode([t for t in ids if t not in skip], skip_special_tokens=False)
        prompt_tokens = int(request.input_ids.shape[0])
        return {
            **self.postprocess(raw, request),
            "raw_text": raw,
            "prompt": request.prompt.text,
            "finish_reason": finish_reason,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }
