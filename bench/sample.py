"""The images the benchmarks send: one line of black text on white, which every model reads."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont


def text_png(text: str, size: int = 32) -> bytes:
    font = ImageFont.load_default(size=size)
    img = Image.new("RGB", (int(font.getlength(text)) + 2 * size, 3 * size), "white")
    ImageDraw.Draw(img).text((size, size), text, font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
