"""transformers' PIL image processor for DeepSeek-OCR-2, with the global view placed where upstream puts it.

Upstream pads the global view with Pillow's ``ImageOps.pad``, which centres the resized page at
``round((1024 - side) * 0.5)``: Python's round, half to even. transformers (5.24) centres it at
``(1024 - side) // 2``. When ``1024 - side`` is odd the two differ by one pixel in about half the
cases (a 1537 x 770 page: row 256 upstream, 255 in transformers; every other row of the tensor then
differs). Tiles and token counts agree; ``tests/engine/test_deepseek_ocr2_processor.py`` holds
both to upstream's preprocessing on 15 page sizes.
"""

from __future__ import annotations

import numpy as np
from transformers import DeepseekOcr2ImageProcessorPil


class UpstreamImageProcessor(DeepseekOcr2ImageProcessorPil):
    def pad_to_square(self, image: np.ndarray, background_color: int | tuple[int, int, int] = 0) -> np.ndarray:
        channels, height, width = image.shape  # the backend works channels-first
        if height == width:
            return image
        size = max(height, width)
        colors = [background_color] * channels if isinstance(background_color, int) else list(background_color)
        if len(colors) != channels:
            raise ValueError(f"background_color needs {channels} values, not {len(colors)}")
        result = np.empty((channels, size, size), dtype=image.dtype)
        for channel, color in enumerate(colors):
            result[channel] = color
        if width > height:
            top = round((size - height) * 0.5)  # as ImageOps.pad
            result[:, top : top + height, :] = image
        else:
            left = round((size - width) * 0.5)
            result[:, :, left : left + width] = image
        return result
