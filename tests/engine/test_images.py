"""decode_image: usable images become RGB arrays, everything else is BadInput (never a crash)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.images import MAX_PIXELS, decode_image
from engine.models.base import BadInput
from tests.helpers import png_bytes, png_with_size


def encoded(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def two_halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue: which way it was turned shows in the pixels."""
    img = Image.new("RGB", (width, height), (255, 0, 0))
    img.paste((0, 0, 255), (width // 2, 0, width, height))
    return img


def test_png_decodes_to_rgb() -> None:
    arr = decode_image(encoded(two_halves(), "PNG"))
    assert arr.shape == (20, 40, 3) and arr.dtype == np.uint8
    assert arr[10, 5].tolist() == [255, 0, 0] and arr[10, 35].tolist() == [0, 0, 255]


def test_jpeg_decodes_to_rgb() -> None:
    arr = decode_image(encoded(two_halves(), "JPEG", quality=95))
    assert arr.shape == (20, 40, 3)
    assert arr[10, 5, 0] > 200 and arr[10, 35, 2] > 200


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16"])
def test_other_png_modes_become_rgb(mode: str) -> None:
    assert decode_image(encoded(Image.new(mode, (5, 4)), "PNG")).shape == (4, 5, 3)


def test_cmyk_jpeg_becomes_rgb() -> None:
    assert decode_image(encoded(Image.new("CMYK", (6, 3)), "JPEG")).shape == (3, 6, 3)


@pytest.mark.parametrize(("orientation", "top", "bottom"), [(6, "red", "blue"), (8, "blue", "red")])
def test_exif_orientation_is_applied(orientation: int, top: str, bottom: str) -> None:
    # 6: stored turned 90 degrees counter-clockwise, so the stored left column is the visual top
    exif = Image.Exif()
    exif[0x0112] = orientation
    arr = decode_image(encoded(two_halves(), "JPEG", exif=exif, quality=95))
    assert arr.shape == (40, 20, 3)  # portrait now
    channel = {"red": 0, "blue": 2}
    assert arr[3, 10, channel[top]] > 200 and arr[-4, 10, channel[bottom]] > 200


def test_patched_header_is_what_pil_reads() -> None:
    assert Image.open(io.BytesIO(png_with_size(9000, 8000))).size == (9000, 8000)


GOOD_PNG = encoded(two_halves(200, 100), "PNG")
GOOD_JPEG = encoded(two_halves(200, 100), "JPEG")

BAD = {
    "empty": b"",
    "truncated png": GOOD_PNG[: len(GOOD_PNG) // 2],
    "png signature only": GOOD_PNG[:8],
    "truncated jpeg": GOOD_JPEG[: len(GOOD_JPEG) // 2],
    "jpeg header only": GOOD_JPEG[:200],
    "text": b"hello, this is not an image at all\n" * 20,
    "random bytes": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "bomb 30000x30000": png_with_size(30000, 30000),
    "just over the limit": png_with_size(MAX_PIXELS // 1000 + 1, 1000),
    "zero width": png_with_size(0, 10),
    "zero size": png_with_size(0, 0),
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_bad_images_are_bad_input(data: bytes) -> None:
    with pytest.raises(BadInput):
        decode_image(data)


def test_large_image_is_refused_from_its_header() -> None:
    # 72 MP: under PIL's own bomb limit, over ours; refused from the header, before any decoding
    with pytest.raises(BadInput, match="9000x8000"):
        decode_image(png_with_size(9000, 8000))


def test_max_pixels_is_a_parameter() -> None:
    data = png_bytes(100, 100)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(BadInput):
        decode_image(data, max_pixels=9_999)
