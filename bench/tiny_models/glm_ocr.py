"""A tiny random GLM-OCR checkpoint: transformers' test config (2 text layers of 16, 2 vision
layers of 48, patch 14, merge 2), a word-level tokenizer with GLM-OCR's special tokens (two stop
tokens, ``<|endoftext|>`` and ``<|user|>``, as the real config lists), the PIL image processor
limited to 224 x 224 px, and a chat template laid out as the real one
(``[gMASK]<sop><|user|>\\n<|begin_of_image|><|image|><|end_of_image|>Text Recognition:<|assistant|>\\n``).

GLM-OCR's processor class (``Glm46VProcessor``) also wants a video processor, which needs
torchvision; the tiny folder saves the image processor and tokenizer, and the adapter builds the
processor without one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GenerationConfig, Glm46VImageProcessorPil, GlmOcrConfig, GlmOcrForConditionalGeneration

from ._vocab import word_tokenizer

NAME = "glm-ocr"
EOT, USER, ASSISTANT = "<|endoftext|>", "<|user|>", "<|assistant|>"
IMAGE, IMAGE_START, IMAGE_END = "<|image|>", "<|begin_of_image|>", "<|end_of_image|>"
VIDEO, VIDEO_START, VIDEO_END = "<|video|>", "<|begin_of_video|>", "<|end_of_video|>"
SPECIALS = [EOT, "[gMASK]", "<sop>", USER, ASSISTANT, IMAGE, IMAGE_START, IMAGE_END, VIDEO, VIDEO_START, VIDEO_END]
WORDS = ["Text", "Table", "Formula", "Recognition:", "Recognize", "the", "text", "in", "image", "and", "output",
         "Markdown", "format.", "<table>", "<tr>", "<td>", "</td>", "</tr>", "</table>", "$$"]  # fmt: skip
CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- '<|begin_of_image|><|image|><|end_of_image|>' -}}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)
MAX_PIXELS = 224 * 224


def build(folder: Path, seed: int = 0, native: bool = True, **_: object) -> Path:
    """``native=False`` writes the model's original tensor names (as the hub's checkpoints have them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(
        SPECIALS, WORDS, extra_special={}, chat_template=CHAT_TEMPLATE, eos_token=EOT, pad_token=EOT
    )
    ids = tokenizer.convert_tokens_to_ids
    stops = [ids(EOT), ids(USER)]
    config = GlmOcrConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 22, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000, "mrope_section": [2, 1, 1]},
            "eos_token_id": stops, "pad_token_id": ids(EOT),
        },
        vision_config={
            "depth": 2, "hidden_size": 48, "num_heads": 12, "out_hidden_size": 16, "intermediate_size": 22,
            "hidden_act": "silu", "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "image_size": 112,
        },
        image_token_id=ids(IMAGE), video_token_id=ids(VIDEO), image_start_token_id=ids(IMAGE_START),
        image_end_token_id=ids(IMAGE_END), video_start_token_id=ids(VIDEO_START), video_end_token_id=ids(VIDEO_END),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = GlmOcrForConditionalGeneration(config).eval()
    with torch.no_grad():  # the default init (std 0.02) makes every step pick one token: spread the logits
        model.lm_head.weight.normal_(0, 1)
        model.get_input_embeddings().weight.normal_(0, 1)
    model.generation_config = GenerationConfig(eos_token_id=stops, pad_token_id=ids(EOT))
    model.save_pretrained(folder, save_original_format=not native)
    Glm46VImageProcessorPil(size={"shortest_edge": 28 * 28, "longest_edge": MAX_PIXELS}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return folder
