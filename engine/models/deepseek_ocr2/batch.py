"""Requests checked and preprocessed one by one, then joined into one left-padded ``generate`` input.

Each request is validated and run through the processor alone, so that one bad request fails
alone and every request gets exactly the tensors it would get on its own. Joining them pads the
token ids on the left (``generate`` derives positions from the attention mask, so a row's positions
do not depend on its padding) and concatenates the views: global views one per row, local tiles
flat with their count per row, as ``DeepseekOcr2Model.get_image_features`` splits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..base import BadInput
from .prompts import Prompt


@dataclass
class PreparedRequest:
    prompt: Prompt
    input_ids: torch.Tensor  # (length,)
    pixel_values: torch.Tensor  # (1, 3, H, W): the global view
    pixel_values_local: torch.Tensor | None  # (tiles, 3, h, w)
    max_tokens: int  # this request's token limit, within the model's cap and its context
    window: int  # its n-gram window
    width: int
    height: int

    @property
    def tiles(self) -> int:
        return 0 if self.pixel_values_local is None else self.pixel_values_local.shape[0]


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


def collate(requests: list[PreparedRequest], pad_id: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The ``generate`` inputs for ``requests`` (left padding)."""
    width = max(r.input_ids.shape[0] for r in requests)
    input_ids = torch.full((len(requests), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
    for row, request in enumerate(requests):
        length = request.input_ids.shape[0]
        input_ids[row, width - length :] = request.input_ids
        attention_mask[row, width - length :] = 1
    locals_ = [r.pixel_values_local for r in requests if r.pixel_values_local is not None]
    inputs: dict[str, Any] = {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "pixel_values": torch.cat([r.pixel_values for r in requests]).to(device, dtype),
        "pixel_values_local": torch.cat(locals_).to(device, dtype) if locals_ else None,
        "num_local_patches": [r.tiles for r in requests],
    }
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
