"""Which way a page is turned, from its line boxes, the recognizer and the line classifier.

A line box much taller than wide is a line turned sideways (``crop_line`` turns its crop a quarter
counter-clockwise): when most of the line length is sideways, the page is turned 90 or 270 degrees.
Upright or upside down is decided by reading the middle of the longest lines both ways (a window
of at most 320 x 48 pixels each: the whole lines cost a third of a page's recognition) and keeping
the way the recognizer is more confident of: rapidocr's line classifier (PaddleOCR's mobile v2.0,
0/180) called lines of the scanned test page upside down with probabilities up to 0.93, so it only
decides the lines that run across the page's axis; every other line follows the page. A page whose
longest lines already read upright with a mean confidence of ``SURE`` or more is taken as upright
without the windows (read upright, the test pages turned upside down scored 0.31-0.73; upright 0.99-1.0).
The order of the two is the line classifier's guess: when it takes the probe lines for upside down
(a mean of 0.5 or more: every test page turned by 180 degrees, and the upright scanned page), the
windows are read first and the page once, the right way; otherwise the page is read upright first.
A page turned a quarter is then turned upright and detected again (``pipeline.read_page``): boxes
come back to the uploaded image's pixels through ``from_upright``.
"""

from __future__ import annotations

import numpy as np

from .classifier import WIDTH
from .nets import Nets
from .recognize import HEIGHT, MIN_WIDTH, normalize_line

BATCH = 16
PROBES = 4  # lines read both ways to decide between a page and the page turned by 180 degrees
SURE = 0.9  # mean confidence of the probe lines read upright that settles a page as upright


def upside_down(nets: Nets, crops: list[np.ndarray]) -> list[float]:
    """The classifier's probability that each crop is upside down."""
    found: list[float] = []
    for start in range(0, len(crops), BATCH):
        batch = np.stack([normalize_line(crop, WIDTH) for crop in crops[start : start + BATCH]])
        found += nets.cls(batch).tolist()
    return found


def window(crop: np.ndarray) -> np.ndarray:
    """The middle of a line crop, at most as wide as the recognizer's narrowest input at its height."""
    width = min(crop.shape[1], max(1, crop.shape[0] * MIN_WIDTH // HEIGHT))
    left = (crop.shape[1] - width) // 2
    return crop[:, left : left + width]


def page_axis(sideways: list[bool], lengths: list[float]) -> bool:
    """True when most of the page's line length runs top to bottom (a page turned 90 or 270)."""
    across = sum(length for side, length in zip(sideways, lengths) if side)
    return across > sum(lengths) - across


def probes(sideways: list[bool], lengths: list[float], axis: bool) -> list[int]:
    """The longest lines along the page's axis, whose reading in both directions decides the turn."""
    along = [i for i, side in enumerate(sideways) if side == axis]
    return sorted(along, key=lambda i: -lengths[i])[:PROBES]


def page_turn(axis: bool, upright: list[float], reversed_: list[float]) -> int:
    """Degrees the page is turned clockwise: 90 or 270 when its lines run top to bottom, 180 when the
    probe lines read better upside down (the recognizer's mean confidences, each way)."""
    flipped = sum(reversed_) > sum(upright)
    return (90 if axis else 0) + (180 if flipped else 0)


def from_upright(box: np.ndarray, page: int, width: int, height: int) -> np.ndarray:
    """A box of the upright page in the pixels of the uploaded (turned) ``width`` x ``height``
    image, corners clockwise from its top-left: the inverse of ``to_upright``."""
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    if page == 90:
        points = np.stack([width - 1 - y, x], axis=1)
    elif page == 180:
        points = np.stack([width - 1 - x, height - 1 - y], axis=1)
    elif page == 270:
        points = np.stack([y, height - 1 - x], axis=1)
    else:
        points = np.stack([x, y], axis=1)
    return _clockwise(points).astype(box.dtype)


def _clockwise(points: np.ndarray) -> np.ndarray:
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    (tl, bl), (tr, br) = (pair[np.argsort(pair[:, 1], kind="stable")] for pair in (by_x[:2], by_x[2:]))
    return np.array([tl, tr, br, bl])


def to_upright(box: np.ndarray, page: int, width: int, height: int) -> np.ndarray:
    """A box of the uploaded (turned) image in the upright page's pixels, corners from top-left."""
    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    if page == 90:
        points = np.stack([y, width - 1 - x], axis=1)
    elif page == 180:
        points = np.stack([width - 1 - x, height - 1 - y], axis=1)
    elif page == 270:
        points = np.stack([height - 1 - y, x], axis=1)
    else:
        points = np.stack([x, y], axis=1)
    return _clockwise(points)
