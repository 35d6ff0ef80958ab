"""Per-model generation settings, the ``generate`` configuration, and how a row's ids end.

A model's defaults (:class:`GenerationDefaults`) come from its reference code; every field can be
changed per server with ``--model-option MODEL.FIELD=VALUE``. ``ngram_size`` 0 turns the n-gram
guard off, ``repeat_run`` 0 the loop stop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .batch import int_option
from .repetition import cut_repetition, repeating_period

# the option that holds a request's n-gram window, by its ``source``
SOURCES = {"image": "ngram_window", "pdf": "ngram_window_pdf"}


@dataclass(frozen=True)
class GenerationDefaults:
    max_new_tokens: int = 8192  # the default and the cap of a request's ``max_tokens``
    ngram_size: int = 20  # no n-gram of this size repeated within the window (0: off)
    ngram_window: int = 90  # generated tokens searched, for images
    ngram_window_pdf: int = 50  # ... for requests with ``source=pdf``
    ngram_whitelist: str = ""  # comma-separated tokens the guard never bans (those the vocabulary has)
    repeat_run: int = 1024  # last-resort loop stop: a row whose last N tokens repeat (0: off)
    repeat_max_period: int = 512
    repeat_every: int = 32
    max_prompt_tokens: int = 1024  # longest prompt text (custom prompts)
    max_batch: int = 8  # requests per ``generate``
    max_batch_tokens: int = 80_000  # KV-cache tokens one ``generate`` may hold: rows x (prompt + limit)

    def with_options(self, options: dict[str, Any]) -> GenerationDefaults:
        """These defaults with the server's ``--model-option`` values applied (checked)."""
        changes: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            default = getattr(self, item.name)
            if isinstance(default, int):
                minimum = 0 if item.name in ("ngram_size", "repeat_run") else 1
                changes[item.name] = int_option(options, item.name, default, minimum=minimum)
            elif options.get(item.name) is not None:
                changes[item.name] = str(options[item.name])
        return dataclasses.replace(self, **changes)

    @property
    def whitelist_tokens(self) -> list[str]:
        return [t.strip() for t in self.ngram_whitelist.split(",") if t.strip()]

    def window(self, source: str) -> int:
        return getattr(self, SOURCES[source])


def generation_config(tokenizer: Any, stop_ids: list[int], max_new_tokens: int) -> Any:
    """Greedy, with the tokenizer's ids: a folder's generation_config.json (or its absence) changes nothing."""
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    return GenerationConfig(
        do_sample=False, num_beams=1, use_cache=True, max_new_tokens=max_new_tokens,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stop_ids[0] if len(stop_ids) == 1 else list(stop_ids),
        pad_token_id=pad,
    )  # fmt: skip


def finish(
    ids: list[int], stop_ids: set[int], stopped_at: int, looped: bool, run: int, max_period: int
) -> tuple[list[int], str, int]:
    """A row's generated ids -> (its answer's ids, ``finish_reason``, completion tokens).

    ``stopped_at``: where the row's own stop (token limit or loop) ended it, -1 if none did; what
    follows is padding. A stop id ends the row (``stop``, counted); a loop is cut to one cycle
    (``repetition``); else the limit ended it (``length``).
    """
    if stopped_at >= 0:
        ids = ids[:stopped_at]
    cut = next((i for i, token in enumerate(ids) if token in stop_ids), None)
    if cut is not None:
        return ids[:cut], "stop", cut + 1
    if looped:
        period = repeating_period(ids, run, max_period)
        return (cut_repetition(ids, period) if period else ids), "repetition", len(ids)
    return ids, "length", len(ids)
