"""Checks on an upload in the supervisor, before it takes a place in the engine's queue.

Only the header is parsed (cheap, no pixel decoding): a file that is not an image, or that
declares absurd dimensions, gets its 400 here and never costs the engine anything. The engine
still decodes in full and answers truncated data with its own 400.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ipc.limits import MAX_IMAGE_PIXELS as MAX_PIXELS
from supervisor.http.errors import ClientError


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def inspect_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageHeader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                fmt = img.format or "unknown"
    except UnidentifiedImageError:
        raise ClientError(400, "not a readable image (unknown or unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ClientError(400, f"image refused: more than {max_pixels} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ClientError(400, f"corrupt image header: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # some of Pillow's openers raise others on bad headers (NotImplementedError...)
        raise ClientError(400, f"not a readable image ({type(exc).__name__}: {exc})") from None
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ClientError(400, f"image of {width}x{height} pixels is outside the limit of {max_pixels} pixels")
    return ImageHeader(fmt, width, height)
