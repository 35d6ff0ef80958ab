"""Text of each batch row as ``generate`` makes it, handed to ``on_partial(row, new_text)``.

A transformers streamer gets each step's new tokens as a host tensor: ``generate`` (its
``StopCheck``) copies them with ``tokens.cpu()`` right before it reads ``unfinished.max()`` on the
host, which it does every step anyway, so the copy waits for no work that the loop would not wait
for a moment later: streaming adds no device sync of its own. Decoding happens on that host copy.

What is streamed is the model's raw text (grounding tags included) up to the row's stop token; the
final reply is authoritative: it may cut a loop that was streamed before the loop stop saw it.
A row ends at the first of its stop ids (a model may have several: an end-of-text and an
end-of-turn token).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.generation.streamers import BaseStreamer

# decode context kept bounded: restart the row's buffer after a newline or this many tokens
_MAX_PENDING = 64


class RowTextStreamer(BaseStreamer):
    def __init__(
        self, tokenizer, rows: int, on_partial: Callable[[int, str], None], stop_ids: set[int], skip_ids: set[int]
    ) -> None:
        self.tokenizer = tokenizer
        self.on_partial = on_partial
        self.stop_ids = stop_ids
        self.skip_ids = skip_ids  # padding (also what follows a per-row stop) and start tokens: no text
        self.prompt_seen = False
        self.pending: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [0] * rows  # characters of decode(pending[row]) already handed over
        self.done = [False] * rows

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate first hands over the prompt
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token in self.stop_ids:
                self.done[row] = True
            elif token not in self.skip_ids:
                self._add(row, token)

    def _add(self, row: int, token: int) -> None:
        pending = self.pending[row]
        pending.append(token)
        text = self.tokenizer.decode(pending, skip_special_tokens=False)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            return
        if len(text) > self.sent[row]:
            self.on_partial(row, text[self.sent[row] :])
        self.sent[row] = len(text)
        if text.endswith("\n") or len(pending) >= _MAX_PENDING:
            # keep the last token as context, so spacing between it and the next one decodes right
            self.pending[row] = pending[-1:]
            self.sent[row] = len(self.tokenizer.decode(self.pending[row], skip_special_tokens=False))

    def end(self) -> None:
        pass
