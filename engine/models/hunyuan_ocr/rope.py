"""HunyuanOCR's rotary positions per request, whatever the batch.

transformers' ``HunYuanVLModel.get_rope_index`` numbers images across the whole batch: its fourth
rotary axis (the image's ordinal) is 0 for the first row's image, 1 for the second row's, and so
on, so a request in row 5 of a batch was positioned as a 6th image and answered differently from
the same request alone (upstream runs one request per sequence, its image always 0). dsocr's
requests hold one image each; each row's positions are computed as that row alone gets them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def per_row(get_rope_index: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> Callable[..., Any]:
    def rope_index(input_ids, mm_token_type_ids, image_grid_thw=None, attention_mask=None, **kwargs):
        rows = input_ids.shape[0]
        if rows == 1 or image_grid_thw is None or image_grid_thw.shape[0] != rows:
            return get_rope_index(input_ids, mm_token_type_ids, image_grid_thw, attention_mask, **kwargs)
        parts = [
            get_rope_index(
                input_ids[r : r + 1], mm_token_type_ids[r : r + 1], image_grid_thw[r : r + 1],
                None if attention_mask is None else attention_mask[r : r + 1], **kwargs,
            )
            for r in range(rows)
        ]  # fmt: skip
        return torch.cat([p for p, _ in parts], dim=1), torch.cat([d for _, d in parts], dim=0)

    return rope_index
