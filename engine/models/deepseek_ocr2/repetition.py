"""Stop greedy decoding that has fallen into a loop, and cut the loop off the output.

Greedy OCR decoders sometimes repeat a line or a table row until ``max_new_tokens`` (upstream fights
it with a no-repeat-n-gram logits processor: n=30 over a 90-token window in DeepSeek-OCR's vLLM
runner, ``no_repeat_ngram_size=20`` in its HF examples). Banning n-grams changes the text and costs
O(length) per step in transformers' implementation; instead we stop once the last ``window``
generated tokens are periodic with a period of at most ``max_period`` tokens, and keep a single
copy of the cycle. The window is long (256 tokens by default) so that legitimate repetition, such
as a row of empty table cells, is left alone.
"""

from __future__ import annotations

import torch
from transformers import StoppingCriteria


def repeating_period(ids: torch.Tensor, window: int, max_period: int) -> int | None:
    """The shortest period p <= max_period of ``ids[-window:]`` (1-D), or None if it has none."""
    if window <= 0 or ids.numel() < window:
        return None
    tail = ids[-window:]
    for period in range(1, min(max_period, window // 2) + 1):
        if torch.equal(tail[period:], tail[:-period]):
            return period
    return None


def cut_repetition(ids: list[int], period: int) -> list[int]:
    """``ids`` up to the end of the first copy of the cycle it ends with."""
    start = len(ids) - period
    while start > 0 and ids[start - 1] == ids[start - 1 + period]:
        start -= 1
    return ids[: start + period]


class RepetitionStop(StoppingCriteria):
    """Stops a sequence whose last ``window`` generated tokens repeat a cycle of <= ``max_period``."""

    def __init__(self, prompt_length: int, window: int = 256, max_period: int = 64) -> None:
        self.prompt_length = prompt_length
        self.window = window
        self.max_period = max_period
        self.periods: dict[int, int] = {}  # batch row -> detected period

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] - self.prompt_length < self.window:
            return done
        for row in range(input_ids.shape[0]):
            period = repeating_period(input_ids[row], self.window, self.max_period)
            if period is not None:
                self.periods[row] = period
                done[row] = True
        return done
