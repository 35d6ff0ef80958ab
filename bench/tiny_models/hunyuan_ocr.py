"""A tiny random HunyuanOCR checkpoint: transformers' test config (2 text layers of 64, 2 vision
layers of 64, patch 16), with spatial merge 2 as the real model has, a word-level tokenizer with
HunyuanOCR-style special tokens (image start/placeholder/end, user and assistant markers), the PIL
image processor limited to 256 x 256 px, and a chat template laid out as the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    HunYuanVLConfig,
    HunYuanVLForConditionalGeneration,
    HunYuanVLImageProcessorPil,
    HunYuanVLProcessor,
)

from ._vocab import word_tokenizer

NAME = "hunyuan-ocr"
BOS, EOS, PAD = "<｜hy_begin▁of▁sentence｜>", "<｜hy_place▁holder▁no▁2｜>", "<｜hy_▁pad▁｜>"
USER, ASSISTANT = "<｜hy_User｜>", "<｜hy_Assistant｜>"
IMAGE_START, IMAGE_END = "<｜hy_place▁holder▁no▁100｜>", "<｜hy_place▁holder▁no▁101｜>"
IMAGE, NEWLINE = "<｜hy_place▁holder▁no▁102｜>", "<｜hy_place▁holder▁no▁103｜>"
SPECIALS = [BOS, EOS, PAD, USER, ASSISTANT, IMAGE_START, IMAGE_END, IMAGE, NEWLINE]
WORDS = ["提取图中的文字。", "把图中的表格解析为HTML。", "识别图片中的公式，用LaTeX格式表示。", "(", ")", ",",
         "<ref>", "</ref>", "<quad>", "</quad>"]  # fmt: skip
CHAT_TEMPLATE = (
    "{{- '<｜hy_begin▁of▁sentence｜>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '<｜hy_User｜>' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}"
    "{{- '<｜hy_place▁holder▁no▁100｜><｜hy_place▁holder▁no▁102｜><｜hy_place▁holder▁no▁101｜>' -}}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}{{- '<｜hy_Assistant｜>' + message['content'] + EOS -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜hy_Assistant｜>' -}}{%- endif -%}"
).replace("EOS", repr(EOS))
MAX_PIXELS = 256 * 256


def build(folder: Path, seed: int = 0, native: bool = True, **_: object) -> Path:
    """``native=False`` writes the model's original tensor names (as the hub's checkpoints have them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(
        SPECIALS, WORDS, chat_template=CHAT_TEMPLATE, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        extra_special={"image_token": IMAGE, "image_start_token": IMAGE_START, "image_end_token": IMAGE_END},
    )  # fmt: skip
    ids = tokenizer.convert_tokens_to_ids
    hidden = 64
    config = HunYuanVLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16, "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 2, 2]},
            "bos_token_id": ids(BOS), "eos_token_id": ids(EOS), "pad_token_id": ids(PAD),
            "eod_token_id": ids(EOS), "sep_token_id": ids(PAD), "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": hidden, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 1, "out_hidden_size": hidden,
            "text_hidden_size": hidden, "max_image_size": 256, "min_image_size": 64, "max_vit_seq_len": 1024,
        },
        image_token_id=ids(IMAGE), im_start_id=ids(IMAGE_START), im_end_id=ids(IMAGE_END),
        im_newline_id=ids(NEWLINE), tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = HunYuanVLForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init (std 0.02) makes every step pick one token: spread the logits
        model.lm_head.weight.normal_(0, 1)
        model.get_input_embeddings().weight.normal_(0, 1)
    model.generation_config = GenerationConfig(bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD))
    model.save_pretrained(folder, save_original_format=not native)
    image_processor = HunYuanVLImageProcessorPil(min_pixels=64 * 64, max_pixels=MAX_PIXELS)
    HunYuanVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    ).save_pretrained(folder)
    return folder
