"""Model adapters by name. Imported lazily: a model's heavy imports happen only when it is used."""

from __future__ import annotations

import importlib
from typing import Any

from engine.models.base import ModelAdapter, UnknownModel

ADAPTERS = {
    "deepseek-ocr-2": "engine.models.deepseek_ocr2:DeepseekOcr2Adapter",
    "glm-ocr": "engine.models.glm_ocr:GlmOcrAdapter",
    "hunyuan-ocr": "engine.models.hunyuan_ocr:HunyuanOcrAdapter",
    "paddleocr-vl": "engine.models.paddleocr_vl:PaddleOcrVlAdapter",
    "ppocr": "engine.models.ppocr:PPOCRAdapter",
    "synthetic": "engine.models.synthetic:SyntheticAdapter",
}


def create_adapter(model: str, options: dict[str, Any] | None = None) -> ModelAdapter:
    """The adapter for ``model``; :class:`UnknownModel` names the models there are."""
    try:
        module_name, cls_name = ADAPTERS[model].split(":")
    except KeyError:
        raise UnknownModel(f"unknown model {model!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(options)
