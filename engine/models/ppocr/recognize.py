"""Text recognition around the model: line crops, batched input tensors, CTC decoding.

The preprocessing is PaddleOCR's (as rapidocr ships it): height 48 keeping the aspect ratio, each
batch padded (not stretched) to its widest crop and to at least 320 pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from .model import BLANK

HEIGHT = 48
MIN_WIDTH = 320
BATCH = 6
# Added above and below a line's box before it is read, as a share of the box's height. The boxes
# come from a detector run at most 960 pixels a side: on a larger page (a PDF page rendered at 144
# dpi, 1600 x 1200) they come out about 10% tighter than at the page's own resolution, where
# RapidOCR detects, and on tight crops the recognizer drops narrow word gaps ("thetest",
# "total92.40": its space class stays under 0.2 there). The margin gives it back the room it reads
# spaces with, at no cost in detection time. 5%, not more: 10% read every layout of the Pillow page
# but lost words on OCRmyPDF's dense linn.pdf (0.955 against 0.962 at 5%) and a letter of the
# scanned test page turned upside down; 8% dropped spaces again (the recognizer is that sensitive).
MARGIN = 0.05


def sideways(box: np.ndarray) -> bool:
    """A box much taller than wide: its crop is turned a quarter to read (see ``crop_line``)."""
    points = box.astype(np.float32)
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    return height >= 1.5 * width


def with_margin(box: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """The quad (corners clockwise from top-left) grown across its text by ``margin`` of its
    thickness on both sides: along its short sides (top to bottom, or across a sideways line)."""
    p = box.astype(np.float32)
    down, right = (p[3] - p[0] + p[2] - p[1]) / 2, (p[1] - p[0] + p[2] - p[3]) / 2
    if np.linalg.norm(down) <= np.linalg.norm(right):
        return p + margin * np.stack([-down, -down, down, down])
    return p + margin * np.stack([-right, right, right, -right])


def crop_line(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The quad ``box`` with its margin (``MARGIN``) warped to an upright rectangle; tall crops are
    turned to read sideways."""
    points = with_margin(box)
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] >= 1.5 * crop.shape[1]:
        crop = np.rot90(crop)
    return crop


def normalize_line(crop: np.ndarray, width: int) -> np.ndarray:
    """A text line at height 48, its width up to ``width`` keeping the ratio, scaled to [-1, 1] and
    padded with 0: the input of both the recognizer and the line classifier (PaddleOCR's)."""
    h, w = crop.shape[:2]
    resized_w = min(width, math.ceil(HEIGHT * w / h))
    resized = cv2.resize(crop, (resized_w, HEIGHT)).astype(np.float32)
    padded = np.zeros((3, HEIGHT, width), dtype=np.float32)
    padded[:, :, :resized_w] = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5
    return padded


def rec_batches(crops: list[np.ndarray]) -> Iterator[tuple[list[int], np.ndarray]]:
    """(crop indices, N x 3 x 48 x W input) batches, crops of similar aspect ratio together.

    Batches are rapidocr's, on purpose: a line's padding changes what it reads (the recognizer's
    attention spans the padding), and batches planned to pad less changed lines of the test pages.
    """
    ratios = [crop.shape[1] / crop.shape[0] for crop in crops]
    order = np.argsort(ratios, kind="stable").tolist()
    for start in range(0, len(order), BATCH):
        indices = order[start : start + BATCH]
        max_ratio = max([MIN_WIDTH / HEIGHT] + [ratios[i] for i in indices])
        width = int(HEIGHT * max_ratio)
        yield indices, np.stack([normalize_line(crops[i], width) for i in indices])


def ctc_decode(probability: np.ndarray, best: np.ndarray, characters: list[str]) -> tuple[str, float]:
    """Greedy CTC over a line's T best classes and their probabilities: text and mean probability
    of the kept steps."""
    keep = best != BLANK
    keep[1:] &= best[1:] != best[:-1]  # a repeated class is one character unless a blank splits it
    if not keep.any():
        return "", 0.0
    text = "".join(characters[i] for i in best[keep])
    return text, float(probability[keep].mean())
