"""Per-row stops decided on the device: each request's token limit, and a last-resort loop stop.

The n-gram guard (``ngram``) keeps greedy decoding out of loops it can see: cycles shorter than its
window. A longer cycle (an 82-token table row repeated until the token cap) gets through it, so a
loop stop stays as a last resort: a row stops once its last ``min_run`` generated tokens repeat
with some period p <= ``max_period``. ``min_run`` is long (1024) so that legitimate repetition,
such as the rows of a blank table (18 tokens each, whitelisted by the guard), is left alone for
dozens of rows; such a loop is reported as ``finish_reason: "repetition"`` and cut to one cycle.

Nothing here reads the device: the check is a few tensor ops every ``every`` steps (on the same
generated lengths in every batch, so a batch stops where its requests alone would), and which row
stopped when is kept in device tensors, read once after ``generate``.
"""

from __future__ import annotations

import torch
from transformers import StoppingCriteria


def periodic_rows(tail: torch.Tensor, run: int) -> torch.Tensor:
    """Rows of ``tail`` (rows x (run + P)) whose last ``run`` tokens repeat with some period p <= P."""
    periods = tail.shape[1] - run
    if periods <= 0:
        return torch.zeros(tail.shape[0], dtype=torch.bool, device=tail.device)
    windows = tail.unfold(1, run, 1)  # window k starts at k; window P is the last `run` tokens
    return (windows[:, :periods] == windows[:, periods:]).all(-1).any(-1)


def repeating_period(ids: list[int], run: int, max_period: int) -> int | None:
    """The shortest period p <= max_period of ``ids[-run:]`` (compared with the p tokens before), or None."""
    for period in range(1, max_period + 1):
        if len(ids) < run + period:
            return None
        if ids[-run:] == ids[-run - period : -period]:
            return period
    return None


def cut_repetition(ids: list[int], period: int) -> list[int]:
    """``ids`` up to the end of the first copy of the cycle it ends with."""
    start = len(ids) - period
    while start > 0 and ids[start - 1] == ids[start - 1 + period]:
        start -= 1
    return ids[: start + period]


class RowStops(StoppingCriteria):
    """Stops row i at ``limits[i]`` generated tokens, or when it loops (see the module doc)."""

    def __init__(
        self,
        prompt_width: int,
        limits: list[int],
        device: torch.device,
        min_run: int = 1024,
        max_period: int = 512,
        every: int = 32,
    ) -> None:
        self.prompt_width = prompt_width
        self.limits = torch.tensor(limits, dtype=torch.long, device=device)
        self.min_run, self.max_period, self.every = min_run, max_period, max(1, every)
        # generated length at which each row was stopped here (-1: not by us), and whether it looped
        self.stopped_at = torch.full((len(limits),), -1, dtype=torch.long, device=device)
        self.looped = torch.zeros(len(limits), dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        length = input_ids.shape[1] - self.prompt_width
        done = length >= self.limits
        if self.min_run > 0 and length > self.min_run and length % self.every == 0:
            span = min(length, self.min_run + self.max_period)
            loop = periodic_rows(input_ids[:, -span:], self.min_run) & (self.stopped_at < 0)
            self.looped |= loop
            done = done | loop
        self.stopped_at = torch.where(done & (self.stopped_at < 0), length, self.stopped_at)
        return done
