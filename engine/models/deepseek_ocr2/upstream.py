"""A raw ``deepseek-ai/DeepSeek-OCR-2`` folder, converted once into the layout transformers' classes read.

Upstream's folder has a ``deepseek_vl_v2`` config (``language_config``, ``vision_config.width``,
``projector_config``), its own tensor names (``model.sam_model.*``, one tensor per MoE expert) and
its own ``processor_config.json``, no ``preprocessor_config.json``. transformers renames the
tensors itself (the ``deepseek_ocr2`` entry of ``conversion_mapping.py``, applied by
``from_pretrained``); its config step lives in ``convert_deepseek_ocr2_weights_to_hf.py``, which
the wheel does not install and which fixes the vision sizes to the released model's. So the
config is mapped here: ``language_config`` as that script maps it (``first_k_dense_replace`` ->
``mlp_layer_types``, unset MLA ranks dropped), the vision sizes read from the tensors' shapes
(what upstream's config leaves out: window, channels, encoder depth and widths), the encoder's
head count and rope as in Qwen2-0.5B (14 heads of 64, theta 1e6) unless the config names them.

The converted folder (config, native-name safetensors, tokenizer, processor) is written once
under ``DSOCR_CACHE_DIR/deepseek-ocr-2/<key>/``, keyed by the source folder and its files' sizes
and dates like every conversion (``vlm.checkpoint.converted_path``), and used from then on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ipc.cache import cache_root

from ..base import WeightsUnavailable
from ..vlm import checkpoint

log = logging.getLogger("dsocr.engine.deepseek_ocr2")

NAME = "deepseek-ocr-2"
RAW_MODEL_TYPE = "deepseek_vl_v2"
SAM, ENCODER = "model.sam_model.", "model.qwen2_model.model.model."
ENCODER_HEAD_DIM, ENCODER_ROPE_THETA = 64, 1_000_000.0  # Qwen2-0.5B's, as upstream's encoder is
TILE_QUERIES_SIDE = 12  # the model's 144 tile queries (12 x 12): a tile is 12 x patch x downsample pixels


def is_raw(folder: Path) -> bool:
    """Whether ``folder`` holds upstream's own layout (its config's ``model_type``)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("model_type") == RAW_MODEL_TYPE


def tensor_shapes(files: list[Path]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:  # headers only
            for name in f.keys():  # noqa: SIM118 (safe_open is no dict)
                shapes[name] = list(f.get_slice(name).get_shape())
    return shapes


def text_config(language: dict[str, Any]) -> dict[str, Any]:
    text = {k: v for k, v in language.items() if not (k in ("kv_lora_rank", "q_lora_rank") and v is None)}
    dense = text.pop("first_k_dense_replace", 0)
    layers = text.get("num_hidden_layers", 28)
    text["mlp_layer_types"] = ["dense"] * dense + ["sparse"] * (layers - dense)
    text.pop("model_type", None)
    return text


def vision_config(raw: dict[str, Any], shapes: dict[str, list[int]]) -> dict[str, Any]:
    width = raw.get("vision_config", {}).get("width", {})
    sam_raw, qwen = width.get("sam_vit_b", {}), width.get("qwen2-0-5b", {})
    patch = shapes[f"{SAM}patch_embed.proj.weight"]  # (hidden, 3, p, p)
    blocks = sorted({int(m.group(1)) for n in shapes if (m := re.match(rf"{re.escape(SAM)}blocks\.(\d+)\.", n))})
    global_layers = list(sam_raw.get("global_attn_indexes", []))
    windowed = [i for i in blocks if i not in global_layers]
    sam = {
        "hidden_size": patch[0],
        "num_hidden_layers": len(blocks),
        "num_attention_heads": sam_raw.get("heads", 12),
        "global_attn_indexes": global_layers,
        "patch_size": patch[-1],
        "image_size": shapes[f"{SAM}pos_embed"][1] * patch[-1],  # (1, g, g, hidden): g patches a side
        "output_channels": shapes[f"{SAM}neck.0.weight"][0],
        "downsample_channels": [shapes[f"{SAM}net_2.weight"][0], shapes[f"{SAM}net_3.weight"][0]],
        "mlp_dim": shapes[f"{SAM}blocks.0.mlp.lin1.weight"][0],
    }
    if windowed:  # a windowed block's relative positions span 2 x window - 1
        sam["window_size"] = (shapes[f"{SAM}blocks.{windowed[0]}.attn.rel_pos_h"][0] + 1) // 2
    layers = {int(m.group(1)) for n in shapes if (m := re.match(rf"{re.escape(ENCODER)}layers\.(\d+)\.", n))}
    q_out = shapes[f"{ENCODER}layers.0.self_attn.q_proj.weight"][0]
    heads = int(qwen.get("heads", q_out // ENCODER_HEAD_DIM))
    encoder = {
        "hidden_size": qwen.get("dim", shapes[f"{ENCODER}norm.weight"][0]),
        "num_hidden_layers": len(layers),
        "num_attention_heads": heads,
        "num_key_value_heads": shapes[f"{ENCODER}layers.0.self_attn.k_proj.weight"][0] // (q_out // heads),
        "intermediate_size": shapes[f"{ENCODER}layers.0.mlp.gate_proj.weight"][0],
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(qwen.get("rope_theta", ENCODER_ROPE_THETA))},
    }
    return {"sam_config": sam, "encoder_config": encoder}


def native_config(raw: dict[str, Any], shapes: dict[str, list[int]], image_token_id: int) -> dict[str, Any]:
    """The ``deepseek_ocr2`` config for a raw ``deepseek_vl_v2`` one and the checkpoint's shapes."""
    return {
        "model_type": "deepseek_ocr2",
        "architectures": ["DeepseekOcr2ForConditionalGeneration"],
        "text_config": text_config(raw["language_config"]),
        "vision_config": vision_config(raw, shapes),
        "image_token_id": image_token_id,
        "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False)),
    }


def convert(folder: Path, target: Path) -> Path:
    """Write the native copy of the raw ``folder`` into the new folder ``target``."""
    from transformers import (
        AutoTokenizer,
        DeepseekOcr2Config,
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
    )

    raw = json.loads((folder / "config.json").read_text())
    files = checkpoint.safetensors_files(folder, NAME)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    image_token = getattr(tokenizer, "image_token", None) or "<image>"
    config = DeepseekOcr2Config.from_dict(
        native_config(raw, tensor_shapes(files), tokenizer.convert_tokens_to_ids(image_token))
    )
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with torch.device("meta"):
        expected = set(DeepseekOcr2ForConditionalGeneration(config).state_dict())
    checkpoint.convert(DeepseekOcr2ForConditionalGeneration, NAME, folder, tmp / checkpoint.CONVERTED, expected,
                       config=config)  # fmt: skip
    config.save_pretrained(tmp)
    try:
        upstream_processor = json.loads((folder / "processor_config.json").read_text())
    except (OSError, ValueError):
        upstream_processor = {}
    sam = config.vision_config.sam_config
    downsample = int(upstream_processor.get("downsample_ratio", 4))
    image_processor = DeepseekOcr2ImageProcessorPil(
        size={"height": sam.image_size, "width": sam.image_size},
        tile_size=TILE_QUERIES_SIDE * sam.patch_size * downsample,
    )
    processor = DeepseekOcr2Processor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=sam.patch_size, downsample_ratio=downsample
    )
    processor.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another engine finished first: its copy is as good
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def native_folder(folder: Path, options: dict[str, Any]) -> Path:
    """``folder`` itself, or for a raw upstream folder its converted copy (made on first use)."""
    if not is_raw(folder):
        return folder
    files = checkpoint.safetensors_files(folder, NAME)
    target = checkpoint.converted_path(cache_root(options), NAME, folder, files).parent
    if not (target / checkpoint.CONVERTED).is_file() or not (target / "config.json").is_file():
        log.info("%s: converting the upstream folder %s into %s", NAME, folder, target)
        try:
            convert(folder, target)
        except WeightsUnavailable:
            raise
        except Exception as exc:
            log.exception("%s: converting %s failed", NAME, folder)
            # the server's log has the details; the answer names no path (issue 20)
            raise WeightsUnavailable(f"{NAME}: cannot convert the upstream folder ({type(exc).__name__})") from exc
    return target
