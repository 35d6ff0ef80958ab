"""A tiny random PaddleOCR-VL checkpoint: transformers' test config (2 text and 2 vision layers,
hidden 32 / 144), a word-level tokenizer with PaddleOCR-VL's special tokens, the PIL image
processor limited to 224 x 224 px (at most 64 image tokens), and a chat template laid out as the
real one (``<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>OCR:\\nAssistant: ``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    PaddleOCRVLConfig,
    PaddleOCRVLForConditionalGeneration,
    PaddleOCRVLImageProcessorPil,
    PaddleOCRVLProcessor,
)

from ._vocab import word_tokenizer

NAME = "paddleocr-vl"
BOS, EOS, PAD = "<|begin_of_sentence|>", "</s>", "<unk>"
IMAGE, IMAGE_START, IMAGE_END = "<|IMAGE_PLACEHOLDER|>", "<|IMAGE_START|>", "<|IMAGE_END|>"
LOC = [f"<|LOC_{i}|>" for i in range(0, 1001, 100)]  # spotting boxes are <|LOC_n|> tokens, n in 0..1000
WORDS = ["User:", "Assistant:", "OCR:", "Table", "Formula", "Chart", "Seal", "Recognition:", "Spotting:",
         "<fcel>", "<nl>", "<lcel>"]  # fmt: skip
CHAT_TEMPLATE = (
    "{{- '<|begin_of_sentence|>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- 'User: ' -}}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' -}}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}{{- '\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'Assistant: ' + message['content'][0]['text'] + '</s>' -}}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)
MAX_PIXELS = 224 * 224


def build(folder: Path, seed: int = 0, native: bool = True, **_: object) -> Path:
    """``native=False`` writes the model's original tensor names (as the hub's checkpoints have them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(
        [BOS, EOS, PAD, IMAGE, IMAGE_START, IMAGE_END, "<|video_pad|>", *LOC], WORDS,
        extra_special={"image_token": IMAGE}, chat_template=CHAT_TEMPLATE, bos_token=BOS, eos_token=EOS, pad_token=PAD,
    )  # fmt: skip
    ids = tokenizer.convert_tokens_to_ids
    config = PaddleOCRVLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "hidden_act": "silu",
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "use_bias": False, "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids(BOS), "eos_token_id": ids(EOS), "pad_token_id": ids(PAD),
        },
        vision_config={
            "hidden_size": 144, "intermediate_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2,
            "patch_size": 14, "spatial_merge_size": 2, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
        },
        image_token_id=ids(IMAGE), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids(IMAGE_START), vision_end_token_id=ids(IMAGE_END), tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = PaddleOCRVLForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init (std 0.02) makes every step pick one token: spread the logits
        model.lm_head.weight.normal_(0, 1)
        model.get_input_embeddings().weight.normal_(0, 1)
    model.generation_config = GenerationConfig(bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD))
    model.save_pretrained(folder, save_original_format=not native)
    image_processor = PaddleOCRVLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=MAX_PIXELS)
    PaddleOCRVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    ).save_pretrained(folder)
    return folder
