"""The tiny DeepSeek-OCR-2 (``bench/tiny_models/deepseek_ocr2.py``) and the requests the tests send it."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from bench.tiny_models.deepseek_ocr2 import build, build_tiny, tiny_config, tiny_tokenizer

__all__ = ["MIXED_REQUESTS", "build", "build_tiny", "text_png", "tiny_config", "tiny_tokenizer"]


def text_png(width: int, height: int, text: str) -> bytes:
    """A small white image with ``text`` drawn on it (the tiny model reads nothing: any pixels do)."""
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((10, 10), text, fill="black")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


# different sizes (with and without tiles), prompt types, prompt lengths and token limits: what a
# batch must answer exactly as the one-by-one run does
MIXED_REQUESTS: list[tuple[bytes, dict[str, str]]] = [
    (text_png(180, 120, "a"), {"prompt_type": "free"}),
    (text_png(400, 150, "Invoice 2041"), {"prompt_type": "document"}),
    (text_png(300, 300, "total"), {"prompt_type": "ocr", "max_tokens": "5"}),
    (text_png(200, 500, "Berlin"), {"prompt_type": "find", "find_term": "total"}),
    (text_png(180, 120, "x"), {"prompt_type": "freeform", "custom_prompt": "Read the total in this image."}),
    (text_png(500, 200, "y"), {"prompt_type": "describe"}),
    (text_png(120, 90, "q"), {"prompt_type": "figure", "max_tokens": "9"}),
    (text_png(250, 250, "r"), {"prompt_type": "free", "grounding": "true"}),
]
