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

import itertools
import json
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


def tiny_tokenizer(extra: list[str] | tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """The tiny vocabulary; ``extra`` adds whole tokens (a scripted answer's pieces)."""
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
    fast.add_tokens(GROUNDING + TABLE + [t for t in extra if t not in vocab])
    return fast


def script_answer(model: DeepseekOcr2ForConditionalGeneration, tokenizer, after: str, script: list[str]) -> None:
    """Make ``model`` answer ``script`` (tokens) to every prompt that ends with the token ``after``.

    Each position then reads only its own token: attention and MLP outputs are zero, so the
    residual stream is the token's embedding, and lm_head scores the next token of the chain (a
    bigram machine; the chain's tokens must differ). The vision tower still runs, unread.
    """
    chain = [after, *script, EOS]
    ids = tokenizer.convert_tokens_to_ids(chain)
    if len(set(ids[:-1])) != len(ids) - 1:
        raise ValueError("a scripted answer's tokens must all differ (and differ from the prompt's last)")
    text = model.model.language_model
    with torch.no_grad():
        for name, param in text.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                param.zero_()
        embed = torch.nn.functional.normalize(torch.randn(len(ids), text.embed_tokens.weight.shape[1]), dim=1)
        model.lm_head.weight.zero_()
        for (prev, nxt), vector in zip(itertools.pairwise(ids), embed):
            text.embed_tokens.weight[prev] = vector
            model.lm_head.weight[nxt] = 100 * vector


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
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},  # upstream's (Qwen2-0.5B's)
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


def upstream_config(config: DeepseekOcr2Config) -> dict:
    """``config`` as upstream's ``deepseek_vl_v2`` config.json says it (``deepseek-ai/DeepSeek-OCR-2``):
    ``language_config`` with ``first_k_dense_replace``, the vision tower by ``width``. The encoder's
    head count is named (upstream's has 14 heads of 64, the tiny one 4 of 16)."""
    language = config.text_config.to_dict()
    layer_types = language.pop("mlp_layer_types")
    language.update(model_type="deepseek_v2", first_k_dense_replace=layer_types.count("dense"), use_mla=False)
    sam, encoder = config.vision_config.sam_config, config.vision_config.encoder_config
    return {
        "model_type": "deepseek_vl_v2",
        "architectures": ["DeepseekOCR2ForCausalLM"],
        "language_config": language,
        "vision_config": {
            "image_size": sam.image_size,
            "model_name": "deepencoderv2",
            "width": {
                "sam_vit_b": {
                    "width": sam.hidden_size,
                    "layers": sam.num_hidden_layers,
                    "heads": sam.num_attention_heads,
                    "global_attn_indexes": list(sam.global_attn_indexes),
                    "downsample_channels": list(sam.downsample_channels),
                },
                "qwen2-0-5b": {"dim": encoder.hidden_size, "heads": encoder.num_attention_heads},
            },
        },
        "projector_config": {
            "input_dim": encoder.hidden_size,
            "n_embed": config.text_config.hidden_size,
            "projector_type": "linear",
            "model_type": "mlp_projector",
        },
        "candidate_resolutions": [[sam.image_size, sam.image_size]],
        "tie_word_embeddings": config.tie_word_embeddings,
    }


UPSTREAM_PROCESSOR = {  # upstream's processor_config.json (DeepseekVLV2Processor), at the tiny sizes
    "patch_size": SAM_PATCH, "downsample_ratio": 4, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "normalize": True, "add_special_token": False, "mask_prompt": False, "image_token": "<image>",
    "pad_token": PAD, "sft_format": "deepseek", "ignore_id": -100, "candidate_resolutions": [[GLOBAL_SIZE, GLOBAL_SIZE]],
    "processor_class": "DeepseekVLV2Processor",
}  # fmt: skip


def build(
    folder: Path,
    seed: int = 0,
    native: bool = True,
    tie: bool = False,
    layout: str | None = None,
    script: list[str] | None = None,
    script_after: str = "markdown.",
) -> Path:
    """Save a tiny random model + processor in ``folder``.

    ``layout``: ``native`` (transformers' tensor names; the default, or ``native=True``),
    ``original`` (``native=False``: the original tensor names, as ``save_pretrained`` writes by
    default) or ``upstream`` (``deepseek-ai/DeepSeek-OCR-2``'s raw folder: its ``deepseek_vl_v2``
    config, its tensor names, its ``processor_config.json``, no ``preprocessor_config.json``; the
    same weights as the other layouts for the same seed). ``tie`` ties lm_head to the embeddings
    (the file then holds only the embeddings). ``script``: the pieces of the answer the model
    gives to every prompt ending in ``script_after`` (default: the ``document`` prompt), each one
    token (pieces the vocabulary lacks are added), see :func:`script_answer`."""
    if script is not None and tie:
        raise ValueError("a scripted model has its own lm_head: not with tie")
    layout = layout or ("native" if native else "original")
    if layout not in ("native", "original", "upstream"):
        raise ValueError(f"layout must be native, original or upstream, not {layout!r}")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(extra=script or ())
    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(len(tokenizer), ids("<image>"), ids(BOS), ids(EOS), ids(PAD), tie=tie)
    torch.manual_seed(seed)
    model = DeepseekOcr2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init leaves SAM's position tables at zero: give them values
        for name, param in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or "view_separator" in name:
                param.normal_(0, 0.02)
    if script is not None:
        script_answer(model, tokenizer, script_after, script)
    model.generation_config = GenerationConfig(bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD))
    model.save_pretrained(folder, save_original_format=layout != "native")
    if layout == "upstream":
        tokenizer.save_pretrained(folder)
        (folder / "generation_config.json").unlink(missing_ok=True)
        (folder / "config.json").write_text(json.dumps(upstream_config(config), indent=2))
        (folder / "processor_config.json").write_text(json.dumps(UPSTREAM_PROCESSOR, indent=2))
        return folder
    image_processor = DeepseekOcr2ImageProcessorPil(
        size={"height": GLOBAL_SIZE, "width": GLOBAL_SIZE}, tile_size=TILE_SIZE
    )
    processor = DeepseekOcr2Processor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=SAM_PATCH, downsample_ratio=4
    )
    processor.save_pretrained(folder)
    return folder


build_tiny = build  # the name the tests know it by
