"""The generation layer every VLM adapter shares: subclass :class:`VlmAdapter`, fill in the hooks.

The base class does the rest, the same for every model: weights (native names bound as they are,
another layout converted once through ``from_pretrained`` into ``DSOCR_CACHE_DIR``), the skeleton
on ``meta`` and its non-persistent buffers after binding, and the request path: each request
checked and preprocessed alone (one bad request fails alone), groups within the KV-token budget,
one left-padded greedy ``generate`` per group with the n-gram guard, each row's own token limit
and the last-resort loop stop, streamed partials, ``finish_reason`` (``stop`` / ``length`` /
``repetition``) and ``usage``. A batch gives token for token what each request gives alone.

What a subclass supplies (class attributes, then methods; those marked * have a default):

- ``name``: the catalog name (``ipc/catalog.py``); ``prompt_types`` and ``default_prompt_type``
  are read from that entry, never written in the adapter;
- ``default_model``: the hub id used without ``model_path``;
- ``config_class``, ``model_class``: transformers class names (``"GlmOcrConfig"``...);
- ``generation_defaults``\\*: a :class:`GenerationDefaults` (``max_new_tokens``, ``ngram_size``
  (0: off), ``ngram_window``, ``ngram_window_pdf``, ``ngram_whitelist``, ``repeat_run`` (0: off),
  ``repeat_max_period``, ``repeat_every``, ``max_prompt_tokens``, ``max_batch``,
  ``max_batch_tokens``); each can be changed with ``--model-option MODEL.FIELD=VALUE``;
- ``load_processor(folder) -> processor`` (with ``.tokenizer``);
- ``build_prompt(prompt_type, options) -> Prompt``: the prompt text the processor gets (chat
  template applied); Unsupported for a type it lacks, BadInput for bad client text (check it with
  ``prompts.check_text`` / ``required_text`` against ``forbidden_tokens()``);
- ``make_inputs(image: PIL.Image, prompt) -> dict``\\*: one request's processor output, batch
  dimension 1 (default ``processor(images=, text=, return_tensors="pt")``);
- ``collate(requests, pad_id, device, dtype) -> dict``\\*: ``generate``'s inputs for a group
  (default ``batch.collate``: every (1, prompt length) tensor left-padded, ``input_ids`` with
  ``pad_id`` and the others with 0; other tensors joined on dim 0, floats cast to ``dtype``;
  plain values listed);
- ``stop_token_ids() -> list[int]``\\*: ids that end an answer, several allowed (default the
  tokenizer's EOS);
- ``forbidden_tokens() -> tuple[str, ...]``\\*: tokens client text must not hold (default the
  tokenizer's special tokens);
- ``postprocess(raw, request) -> dict``\\*: raw text -> ``text``, ``lines``, ``boxes`` (pixels:
  ``boxes.parse_boxes(det, width, height, coord_max)`` scales 0-999 / 0-1000 spaces) and
  ``figures`` (``engine.figures.crop_figure`` on ``request.image``); default the stripped text;
- ``dtype_for(device)``\\*: bf16 on CUDA, float32 elsewhere;
- ``fresh_buffers(sub, device)``\\*: a rebuilt module whose non-persistent buffers replace ``sub``'s
  ``meta`` ones (default ``type(sub)(config=sub.config)``, right for rotary embeddings);
- ``max_positions(module)``\\*: the context length (default ``text_config.max_position_embeddings``).

A result holds what ``postprocess`` gives plus ``raw_text``, ``prompt``, ``finish_reason`` and
``usage``. Modules: ``adapter`` (the base class), ``batch`` (prepared requests, collation, token
groups), ``generation`` (defaults, ``GenerationConfig``, how a row ends), ``ngram``, ``repetition``,
``streaming``, ``prompts`` (``Prompt``, client-text checks), ``boxes``, ``checkpoint``.
"""

from .adapter import VlmAdapter
from .batch import PreparedRequest, collate, int_option
from .generation import GenerationDefaults
from .prompts import Prompt

__all__ = ["GenerationDefaults", "PreparedRequest", "Prompt", "VlmAdapter", "collate", "int_option"]
