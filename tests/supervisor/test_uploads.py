"""``supervisor.http.uploads.inspect_image``: the supervisor's cheap header check on uploads."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from supervisor.http.errors import ClientError
from supervisor.http.uploads import MAX_PIXELS, ImageHeader, inspect_image

BAD_DIR = Path(__file__).resolve().parent.parent / "data" / "bad"


def encoded(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "white").save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def refused(data: bytes, *needles: str, **kw) -> ClientError:
    with pytest.raises(ClientError) as info:
        inspect_image(data, **kw)
    assert info.value.status == 400
    assert info.value.message and "Traceback" not in info.value.message
    for needle in needles:
        assert needle in info.value.message, info.value.message
    return info.value


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WEBP"), ("BMP", "BMP"),
                                           ("GIF", "GIF"), ("TIFF", "TIFF")])  # fmt: skip
def test_good_images(fmt: str, name: str) -> None:
    assert inspect_image(encoded(fmt, (64, 48))) == ImageHeader(name, 64, 48)


def test_grey_and_alpha_png_and_a_big_but_allowed_scan() -> None:
    assert inspect_image(encoded("PNG", (10, 20), "L")) == ImageHeader("PNG", 10, 20)
    assert inspect_image(encoded("PNG", (10, 20), "RGBA")) == ImageHeader("PNG", 10, 20)
    # 7000 x 7000 is 49 megapixels: under the limit, and the header alone says so
    assert inspect_image(png_declaring(7000, 7000)) == ImageHeader("PNG", 7000, 7000)


def test_only_the_header_is_read() -> None:
    """A PNG cut in its pixel data passes here: the engine's full decode refuses it later."""
    data = encoded("PNG", (300, 200), quality=95)
    assert inspect_image(data[: len(data) // 2]) == ImageHeader("PNG", 300, 200)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (MAX_PIXELS // 1000 + 1, 1000), (2**31 - 1, 1)])
def test_bomb_headers_are_refused(width: int, height: int) -> None:
    refused(png_declaring(width, height), "pixels")


def test_the_limit_is_a_parameter() -> None:
    assert inspect_image(encoded("PNG", (100, 100)), max_pixels=10_000).width == 100
    refused(encoded("PNG", (100, 101)), "pixels", max_pixels=10_000)


def test_zero_size_is_refused() -> None:
    refused(png_declaring(0, 0))
    refused(png_declaring(0, 10))


@pytest.mark.parametrize(
    "data",
    [b"", b"\0", b"hello world", b"<html></html>", b"%!PS-Adobe-3.0\n", random.Random(5).randbytes(4096),
     b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a"],
    ids=["empty", "nul", "text", "html", "postscript-text", "random", "png-signature", "jpeg-soi", "gif-magic"],
)  # fmt: skip
def test_junk_is_refused(data: bytes) -> None:
    refused(data)


@pytest.mark.parametrize("cut", [8, 12, 20, 30])
def test_truncated_png_header_is_refused(cut: int) -> None:
    refused(encoded("PNG")[:cut])


@pytest.mark.parametrize("cut", [2, 4, 20, 100])
def test_truncated_jpeg_header_is_refused(cut: int) -> None:
    refused(encoded("JPEG")[:cut])


def test_png_with_a_bad_header_checksum_is_refused() -> None:
    data = bytearray(encoded("PNG"))
    data[29] ^= 0xFF  # the IHDR CRC
    refused(bytes(data))


@pytest.mark.parametrize("name", ["unknown_pixel_format.dds", "spider_stack.spi"])
def test_openers_that_raise_other_exceptions_are_a_400(name: str) -> None:
    """Pillow raises NotImplementedError / AttributeError for these headers: a 400, not a 500."""
    refused((BAD_DIR / name).read_bytes(), "not a readable image")


@pytest.mark.parametrize("name", sorted(p.name for p in BAD_DIR.iterdir() if p.suffix != ".md"))
def test_corpus_files_that_fail_at_the_header_are_a_400(name: str) -> None:
    data = (BAD_DIR / name).read_bytes()
    try:
        header = inspect_image(data)
    except ClientError as exc:
        assert exc.status == 400
        return
    # the rest have a sound header and fail in the engine's full decode
    assert name.startswith("truncated") and header.width > 0, (name, header)
