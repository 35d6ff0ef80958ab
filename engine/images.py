"""Image bytes -> RGB array, refusing what is not a usable image before it costs memory."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.models.base import BadInput
from ipc.limits import MAX_IMAGE_PIXELS as MAX_PIXELS


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An H x W x 3 uint8 RGB array for ``data``; :class:`BadInput` says what is wrong with it."""
    if not data:
        raise BadInput("empty image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w < 1 or h < 1 or w * h > max_pixels:
                raise BadInput(f"image of {w}x{h} pixels is outside the limit of {max_pixels} pixels")
            img.load()
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise BadInput("not a readable image (unknown or unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(f"image refused: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # truncated or corrupt data inside a recognised container
        raise BadInput(f"corrupt image data: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # some of Pillow's decoders raise others on bad data (NotImplementedError...)
        raise BadInput(f"not a readable image ({type(exc).__name__}: {exc})") from None
