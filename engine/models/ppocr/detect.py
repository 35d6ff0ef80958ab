"""DB text detection: the input tensor, and the line quadrilaterals from the probability map.

Ported from PaddleOCR's ``DBPostProcess`` (as rapidocr ships it) with one change: the unclip step
grows the min-area rectangle by ``d = area * ratio / perimeter`` on each side, which is what the
polygon offset it replaces does to a rectangle, so no pyclipper or shapely is needed.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SIDE = 960
THRESH = 0.3  # pixel probability that counts as text
BOX_THRESH = 0.5  # mean probability a box needs
UNCLIP_RATIO = 1.6
MAX_CANDIDATES = 1000
MIN_SIZE = 3


def det_input(image_bgr: np.ndarray) -> np.ndarray:
    """1 x 3 x H x W float32, longest side at most ``MAX_SIDE``, both sides multiples of 32."""
    h, w = image_bgr.shape[:2]
    ratio = min(1.0, MAX_SIDE / max(h, w))
    new_h = max(32, round(int(h * ratio) / 32) * 32)
    new_w = max(32, round(int(w * ratio) / 32) * 32)
    resized = cv2.resize(image_bgr, (new_w, new_h)).astype(np.float32)
    normalized = (resized / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None], dtype=np.float32)


def _corners(rect: tuple) -> tuple[np.ndarray, float]:
    """The rectangle's corners (top-left, top-right, bottom-right, bottom-left) and short side."""
    p = sorted(cv2.boxPoints(rect).tolist(), key=lambda point: point[0])
    top_left, bottom_left = (p[0], p[1]) if p[1][1] > p[0][1] else (p[1], p[0])
    top_right, bottom_right = (p[2], p[3]) if p[3][1] > p[2][1] else (p[3], p[2])
    box = np.array([top_left, top_right, bottom_right, bottom_left], dtype=np.float32)
    return box, min(rect[1])


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the box (PaddleOCR's "fast" score)."""
    h, w = prob.shape
    x_min, y_min = np.clip(np.floor(box.min(axis=0)).astype(int), 0, [w - 1, h - 1])
    x_max, y_max = np.clip(np.ceil(box.max(axis=0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y_max - y_min + 1, x_max - x_min + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [(box - [x_min, y_min]).astype(np.int32)], 1)
    return cv2.mean(prob[y_min : y_max + 1, x_min : x_max + 1], mask)[0]


def _unclip(rect: tuple) -> tuple:
    """The rectangle grown on each side by the DB unclip distance (see the module docstring)."""
    center, (rw, rh), angle = rect
    distance = rw * rh * UNCLIP_RATIO / (2 * (rw + rh))  # area * ratio / perimeter
    return center, (rw + 2 * distance, rh + 2 * distance), angle


def _clockwise(box: np.ndarray) -> np.ndarray:
    """Corners reordered top-left, top-right, bottom-right, bottom-left after scaling and rounding."""
    by_x = box[np.argsort(box[:, 0], kind="stable")]
    (tl, bl), (tr, br) = (pair[np.argsort(pair[:, 1], kind="stable")] for pair in (by_x[:2], by_x[2:]))
    return np.array([tl, tr, br, bl], dtype=np.float32)


def boxes_from_prob(prob: np.ndarray, src_h: int, src_w: int) -> list[tuple[np.ndarray, float]]:
    """Line quads (4 x 2 int, clockwise from top-left, source pixels) with their scores."""
    height, width = prob.shape
    bitmap = cv2.dilate((prob > THRESH).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for contour in contours[:MAX_CANDIDATES]:
        rect = cv2.minAreaRect(contour)
        box, short_side = _corners(rect)
        if short_side < MIN_SIZE:
            continue
        score = _box_score(prob, box)
        if score < BOX_THRESH:
            continue
        box, short_side = _corners(_unclip(rect))
        if short_side < MIN_SIZE + 2:
            continue
        box = np.clip(np.round(box / [width, height] * [src_w, src_h]), 0, [src_w, src_h])
        box = np.clip(_clockwise(box), 0, [src_w - 1, src_h - 1]).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        found.append((box, float(score)))
    return found
