"""Requests checked and preprocessed one by one, then joined into one left-padded ``generate`` input.

Each request is validated and run through the processor alone, so that one bad request fails
alone and every request gets exactly the tensors it would get on its own. Joining them
(:func:`collate`, an adapter's default ``collate`` hook) pads every per-token tensor on the left
(``input_ids`` with the pad id; ``attention_mask``, ``mm_token_type_ids`` and the like with 0:
``generate`` derives positions from the attention mask, so a row's positions do not depend on its
padding) and joins every other tensor along its first dimension, the way a processor batches
images (DeepSeek's global views and flat local tiles, Qwen-style flat patches and
``image_grid_thw`` rows). Plain values (DeepSeek's ``num_local_patches``) become one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base import BadInput
from .prompts import Prompt


@dataclass
class PreparedRequest:
    prompt: Prompt
    inputs: dict[str, Any]  # the processor's output for this request alone (batch dimension 1)
    max_tokens: int  # this request's token limit, within the model's cap and its context
    window: int  # its n-gram window
    width: int
    height: int
    image: np.ndarray | None = field(default=None, repr=False)  # the page, for figure crops

    @property
    def input_ids(self) -> torch.Tensor:
        """The prompt's ids, (length,)."""
        return self.inputs["input_ids"][0]


def int_option(options: dict[str, Any], name: str, default: int, minimum: int = 0) -> int:
    value = options.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"option {name!r} must be an integer, not {value!r}") from None
    if number < minimum:
        raise BadInput(f"option {name!r} must be at least {minimum}, not {number}")
    return number


def is_per_token(value: Any, length: int) -> bool:
    """A (1, length) tensor: one value per prompt token."""
    return isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, length)


def collate(requests: list[PreparedRequest], pad_id: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The ``generate`` inputs for ``requests``: per-token tensors left-padded, the rest joined.

    Floating tensors (pixels) are cast to ``dtype``; a key that is None in every request is left out.
    """
    width = max(r.input_ids.shape[0] for r in requests)
    keys = list(dict.fromkeys(k for r in requests for k in r.inputs))
    inputs: dict[str, Any] = {}
    for key in keys:
        values = [r.inputs.get(key) for r in requests]
        if all(v is None for v in values):
            continue
        if all(is_per_token(v, r.input_ids.shape[0]) for v, r in zip(values, requests)):
            padded = torch.full((len(requests), width), pad_id if key == "input_ids" else 0, dtype=values[0].dtype)
            for row, value in enumerate(values):
                padded[row, width - value.shape[1] :] = value[0]
            inputs[key] = padded.to(device)
        elif all(isinstance(v, torch.Tensor) or v is None for v in values):
            joined = torch.cat([v for v in values if v is not None])
            inputs[key] = joined.to(device, dtype) if joined.is_floating_point() else joined.to(device)
        else:  # plain values, one list per batch
            inputs[key] = [x for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    return inputs


def token_groups(requests: list[PreparedRequest], budget: int) -> list[tuple[int, list[PreparedRequest]]]:
    """Consecutive groups of ``requests`` (with the index of each group's first) that each fit
    ``budget`` tokens of KV cache: rows x (longest prompt + largest token limit), as a left-padded
    ``generate`` allocates them. A request too large for the budget alone runs alone."""
    groups: list[tuple[int, list[PreparedRequest]]] = []
    current: list[PreparedRequest] = []
    start = 0
    for i, request in enumerate(requests):
        trial = [*current, request]
        cost = len(trial) * (max(r.input_ids.shape[0] for r in trial) + max(r.max_tokens for r in trial))
        if current and cost > budget:
            groups.append((start, current))
            current, start = [request], i
        else:
            current = trial
    if current:
        groups.append((start, current))
    return groups
