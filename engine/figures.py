"""Figure crops: the shape every model returns them in, so the supervisor and clients see one.

A result's ``figures`` is a list of ``{"id": "figure-N.png", "box": [x1, y1, x2, y2],
"png_base64": "...", "caption": str | None}``: ``box`` in the image's pixels, ``id`` the file name
the markdown links as ``![](figure-N.png)`` (N counts the page's figures from 0), the crop a PNG in
base64 (no ``data:`` prefix). A PDF's merged answer prefixes ids with the page
(``page-P-figure-N.png``, see ``supervisor/documents/results.py``). DeepSeek-OCR-2's ``image`` spans and the
embedded model's figure regions both come through :func:`crop_figure`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image


def figure_id(index: int) -> str:
    return f"figure-{index}.png"


def figure_link(index: int) -> str:
    """The markdown that stands for figure ``index`` in the page's text."""
    return f"![]({figure_id(index)})"


def crop_figure(
    image: np.ndarray, box: list[int] | tuple[int, ...], index: int, caption: str | None = None
) -> dict[str, Any]:
    """Figure ``index`` of ``image`` (H x W x 3 uint8) cut at ``box``, clamped to the image."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, x2 = sorted((min(max(x1, 0), width), min(max(x2, 0), width)))
    y1, y2 = sorted((min(max(y1, 0), height), min(max(y2, 0), height)))
    if x2 <= x1 or y2 <= y1:  # a degenerate box still gives a (1 x 1) picture, never an error
        x2, y2 = min(x1 + 1, width), min(y1 + 1, height)
        x1, y1 = x2 - 1, y2 - 1
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[y1:y2, x1:x2])).save(buffer, format="PNG")
    return {
        "id": figure_id(index),
        "box": [x1, y1, x2, y2],
        "png_base64": base64.b64encode(buffer.getvalue()).decode("ascii"),
        "caption": caption,
    }
