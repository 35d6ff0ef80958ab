"""A tiny random DeepSeek-OCR-2 checkpoint (``deepseek-ocr-2-tiny``): built in memory, saved like the real one.

The real model reads a 1024 px global view and 768 px tiles; the vision tower always returns its
144 (<= 144 patches) or 256 learned queries per view, so the tiny one keeps those counts: SAM patch
4 and the processor at 256 px (64 x 64 patches -> 16 x 16 after the x4 downsampling = 256 tokens)
with 192 px tiles (144 tokens). Every width is small (SAM 32, encoder 64, text 64 with 2 layers,
one dense and one MoE with 8 experts), and SAM attends in 8 x 8 windows only (a global layer over
the 64 x 64 patches cost ~15x the rest of the vision tower), so an image costs ~0.1 s on a CPU.

The tokenizer is a ``tokenizers`` WordLevel model wrapped in ``PreTrainedTokenizerFast``: the
prompts' words, the grounding tokens, ``[ ] ,`` and the numbers 0-999 (so recorded grounding output
can be tokenized), ``<image>``, the table tokens ``<td> </td> <tr> </tr>`` (added tokens, as in
upstream's tokenizer), and a few words the post-processing tests need (``</s>`` as plain text,
``\\coloneqq``...). No download anywhere.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    DeepseekOcr2Config,
    DeepseekOcr2ForConditionalGeneration,
    DeepseekOcr2ImageProcessorPil,
    DeepseekOcr2Processor,
    GenerationConfig,
    PreTrainedTokenizerFast,
)

NAME = "deepseek-ocr-2"
BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
SPECIAL = [BOS, EOS, PAD, "<image>"]
# added but not "special": decoding keeps them, as the real tokenizer does for grounding output
GROUNDING = ["<|grounding|>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"]
# the table tokens upstream's tokenizer also has whole (its n-gram whitelist names <td>, </td> by id)
TABLE = ["<td>", "</td>", "<tr>", "</tr>"]
WORDS = [
    "Convert",
    "the",
    "document",
    "to",
    "markdown.",
    "OCR",
    "this",
    "image.",
    "Free",
    "OCR.",
    "Parse",
    "figure.",
    "Describe",
    "in",
    "detail.",
    "Locate",
    "Invoice",
    "total",
    "Berlin",
    "Shipped",
    "title",
    "text",
    "table",
    "#",
    "R",
    "&",
    "D",
    "<table>",
    "</table>",
    "image",
    "</s>",
    "\\coloneqq",
    "\\eqqcolon",
    "x",
    "y",
]
GLOBAL_SIZE, TILE_SIZE, SAM_PATCH = 256, 192, 4


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab: dict[str, int] = {}
    # DeepSeek's ids: BOS 0, EOS 1 (transformers' default DeepseekOcr2Config says EOS 2: see the stop tests)
    for token in [BOS, EOS, "[UNK]", *SPECIAL, *GROUNDING, "\n", "[", "]", ",", *WORDS, *map(str, range(1000))]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"[\n\[\],]"), behavior="isolated"),
    ])  # fmt: skip
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token="[UNK]",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    fast.add_tokens(GROUNDING + TABLE)
    return fast


def tiny_config(
    vocab_size: int, image_token_id: int, bos: int, eos: int, pad: int, tie: bool = False
) -> DeepseekOcr2Config:
    sam = {
        "hidden_size": 32, "output_channels": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
        "image_size": GLOBAL_SIZE, "patch_size": SAM_PATCH, "window_size": 8, "global_attn_indexes": [],
        "downsample_channels": [32, 64],
    }  # fmt: skip
    encoder = {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "max_position_embeddings": 512, "vocab_size": vocab_size,
    }  # fmt: skip
    text = {
        "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 4096,
        "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "mlp_layer_types": ["dense", "sparse"], "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
    }  # fmt: skip
    return DeepseekOcr2Config(
        vision_config={"sam_config": sam, "encoder_config": encoder},
        text_config=text,
        image_token_id=image_token_id,
        tie_word_embeddings=tie,
    )


def build(folder: Path, seed: int = 0, native: bool = True, tie: bool = False) -> Path:
    """Save a tiny random model + processor in ``folder``; ``native=False`` writes the original
    (pre-transformers) tensor names, as ``save_pretrained`` does by default; ``tie`` ties lm_head
    to the embeddings (the file then holds only the embeddings)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(len(tokenizer), ids("<image>"), ids(BOS), ids(EOS), ids(PAD), tie=tie)
    torch.manual_seed(seed)
    model = DeepseekOcr2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init leaves SAM's position tables at zero: give them values
        for name, param in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or "view_separator" in name:
                param.normal_(0, 0.02)
    model.generation_config = GenerationConfig(bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD))
    model.save_pretrained(folder, save_original_format=not native)
    image_processor = DeepseekOcr2ImageProcessorPil(
        size={"height": GLOBAL_SIZE, "width": GLOBAL_SIZE}, tile_size=TILE_SIZE
    )
    processor = DeepseekOcr2Processor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=SAM_PATCH, downsample_ratio=4
    )
    processor.save_pretrained(folder)
    return folder


build_tiny = build  # the name the tests know it by
