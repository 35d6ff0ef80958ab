"""Upstream's repetition guard: no n-gram repeated within a window of generated tokens.

DeepSeek's own runners (deepseek-ai/DeepSeek-OCR-2, ``DeepSeek-OCR2-vllm/process/ngram_norepeat.py``,
and vLLM's ``NGramPerReqLogitsProcessor``) ban, for the next token, every token that would complete
an n-gram already present among the last ``window`` *generated* tokens (vLLM hands its logits
processors the output ids only), except whitelisted ids. Their values: n = 20, window 90 for images
(``run_dpsk_ocr2_image.py``) and 50 for PDF pages (``run_dpsk_ocr2_pdf.py``), whitelist ``<td>``,
``</td>``. The semantics here are the same, row by row, with each row's own window.

Upstream loops over Python lists on the host. This runs on the device with a few tensor ops of
size batch x window x n and never reads a value back: generate's loop pays no extra sync for it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class NoRepeatNGram(LogitsProcessor):
    """Bans tokens that would repeat an n-gram seen in the row's last ``windows[row]`` generated tokens.

    ``prompt_width`` is the (left-padded) prompt length: generated tokens start there in every row.
    """

    def __init__(
        self, prompt_width: int, ngram_size: int, windows: list[int], whitelist: list[int], device: torch.device
    ) -> None:
        self.prompt_width = prompt_width
        self.n = ngram_size
        self.max_window = max(windows)
        self.windows = torch.tensor(windows, dtype=torch.long, device=device).unsqueeze(1)
        self.whitelist = torch.tensor(sorted(set(whitelist)), dtype=torch.long, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n = self.n
        length = input_ids.shape[1] - self.prompt_width  # generated so far: the same in every row
        if n <= 1 or length < n:
            return scores
        span = min(length, self.max_window)
        if span < n:  # no whole n-gram inside any window (upstream's search range is empty)
            return scores
        grams = input_ids[:, -span:].unfold(1, n, 1)  # (rows, span - n + 1, n): every n-gram in the span
        prefix = input_ids[:, -(n - 1) :]  # the n - 1 last tokens
        match = (grams[:, :, :-1] == prefix[:, None, :]).all(-1)
        # a gram starting at generated position s counts when s >= length - window (upstream's search_start)
        starts = torch.arange(length - span, length - n + 1, device=input_ids.device)
        match &= starts[None, :] >= length - self.windows
        hits = torch.zeros_like(scores)
        hits.scatter_add_(1, grams[:, :, -1], match.to(scores.dtype))  # duplicates add up, never race
        if self.whitelist.numel():
            hits[:, self.whitelist] = 0
        return scores.masked_fill(hits > 0, -float("inf"))
