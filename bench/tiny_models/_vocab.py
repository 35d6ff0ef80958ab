"""A tiny word-level tokenizer for the tiny VLMs: each model's special tokens, its prompt words, and
a few hundred plain words, so random weights decode to readable words joined by spaces (the same
text streamed or not). Built in memory from ``tokenizers``: no download.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

FILLER = ["Invoice", "total", "Berlin", "Shipped", "the", "document", "table", "R&D", "x", "y", "|", "#", "-"]


def word_tokenizer(
    specials: list[str], words: list[str], *, extra_special: dict[str, str], chat_template: str, **named: str
) -> PreTrainedTokenizerFast:
    """``specials`` first (in that order: the model's ids are looked up from the tokenizer), then
    ``words``, the filler words and the numbers 0-999; ``named`` sets bos/eos/pad/unk tokens."""
    vocab: dict[str, int] = {}
    for token in ["[UNK]", *specials, "\n", *words, *FILLER, *map(str, range(1000))]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
    ])  # fmt: skip
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", extra_special_tokens=extra_special, **named)
    fast.add_special_tokens({"additional_special_tokens": specials}, replace_extra_special_tokens=False)
    fast.chat_template = chat_template
    return fast
