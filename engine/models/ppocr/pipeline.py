"""One image through detection, cropping, recognition and reading order."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detect import boxes_from_prob, det_input
from .layout import reading_order
from .nets import Nets
from .orientation import SURE, from_upright, page_axis, page_turn, probes, to_upright, upside_down, window
from .recognize import crop_line, ctc_decode, rec_batches, sideways
from .words import char_centres, ctc_steps, line_words

# cv2.rotate codes that turn a page turned clockwise by the key's degrees back upright
UNDO_TURN = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
MIN_SCORE = 0.5  # PaddleOCR's drop_score: lines read with less confidence are left out
# Pages whose longest side is under this are enlarged to it (at most ``MAX_UPSCALE`` times): the
# detector, trained on pages of about 960 pixels, merges and misses the lines of tiny renders.
UPSCALE_BELOW = 480
MAX_UPSCALE = 4.0


@dataclass
class Line:
    text: str
    box: np.ndarray  # 4 x 2 int32, clockwise from top-left, image pixels
    score: float
    block: int = 0  # reading-order block (paragraph or column piece), from 0
    words: list[tuple[str, np.ndarray, float]] | None = None  # (word, quad, score), from CTC steps


def upscale_factor(height: int, width: int) -> float:
    longest = max(height, width)
    return min(MAX_UPSCALE, UPSCALE_BELOW / longest) if longest < UPSCALE_BELOW else 1.0


def detect(nets: Nets, image_bgr: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Line quads (image pixels) and their detection scores."""
    return boxes_from_prob(nets.det(det_input(image_bgr)), *image_bgr.shape[:2])


# a line read: text, score, and each character's centre (fraction of the crop) and probability
Read = tuple[str, float, list[float], list[float]]


def recognize(nets: Nets, crops: list[np.ndarray]) -> list[Read]:
    """(text, score, character centres, character probabilities) of each line crop."""
    results: list[Read] = [("", 0.0, [], [])] * len(crops)
    for indices, batch in rec_batches(crops):
        probability, best = nets.rec(batch)
        for row, index in enumerate(indices):
            text, score = ctc_decode(probability[row], best[row], nets.characters)
            steps, probs = ctc_steps(probability[row], best[row])
            centres = char_centres(steps, best.shape[1], batch.shape[3], crops[index])
            results[index] = (text, score, centres, probs.tolist())
    return results


def _read_crops(
    nets: Nets, crops: list[np.ndarray], turned: list[bool], flip: bool = False
) -> tuple[list[Read], list[bool]]:
    """What line crops of a page read upright say, and which crops were read turned by 180
    degrees: sideways lines (across the page's lines) are turned as the line classifier says, the
    others read as cropped (``flip``: turned by 180 degrees)."""
    across = [i for i, side in enumerate(turned) if side]
    flipped = [flip and not side for side in turned]
    crops = [np.rot90(crop, 2) if f else crop for crop, f in zip(crops, flipped)]
    for i, p in zip(across, upside_down(nets, [crops[i] for i in across])):
        flipped[i] = p >= 0.5
        crops[i] = np.rot90(crops[i], 2) if p >= 0.5 else crops[i]
    return recognize(nets, crops), flipped


def _words(boxes: list[np.ndarray], reads: tuple[list[Read], list[bool]]) -> list[list]:
    """Each line's (word, quad, score), in the pixels its box is in."""
    return [line_words(box, r[0], r[2], r[3], f) for box, r, f in zip(boxes, *reads)]


def _read_upright(nets: Nets, image: np.ndarray):
    """Boxes and (text, score) of the lines of an upright page."""
    boxes = [box for box, _ in detect(nets, image)]
    crops = [crop_line(image, box) for box in boxes]
    reads = _read_crops(nets, crops, [sideways(box) for box in boxes])
    return boxes, reads[0], _words(boxes, reads)


def _windows_turn(nets: Nets, crops: list[np.ndarray], axis: bool) -> int:
    """The page's turn from the middles of its probe lines read both ways."""
    windows = [window(crop) for crop in crops]
    scores = [read[1] for read in recognize(nets, windows + [np.rot90(w, 2) for w in windows])]
    return page_turn(axis, scores[: len(windows)], scores[len(windows) :])


@dataclass
class Page:
    lines: list[Line]
    rotation: int  # degrees the page was turned clockwise from upright (and turned back to read)


def read_page(nets: Nets, image_rgb: np.ndarray) -> Page:
    """The text lines of an H x W x 3 uint8 RGB image, in reading order. Call in inference mode."""
    image = np.ascontiguousarray(image_rgb[..., ::-1])  # PaddleOCR's models read BGR
    height, width = image.shape[:2]
    scale = upscale_factor(height, width)
    if scale > 1:
        size = (round(width * scale), round(height * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    boxes = [box for box, _ in detect(nets, image)]
    crops = [crop_line(image, box) for box in boxes]
    turned = [sideways(box) for box in boxes]
    lengths = [float(max(crop.shape[:2])) for crop in crops]
    axis = page_axis(turned, lengths)
    probe = probes(turned, lengths, axis)
    if axis:
        # A page turned a quarter: its longest lines read both ways say which quarter; then the
        # page is turned upright and detected again (the detector misses lines of sideways pages).
        rotation = _windows_turn(nets, [crops[i] for i in probe], axis)
        boxes, texts, words = _read_upright(nets, cv2.rotate(image, UNDO_TURN[rotation]))
        boxes = [from_upright(box, rotation, image.shape[1], image.shape[0]) for box in boxes]
        words = [[(w, from_upright(q, rotation, image.shape[1], image.shape[0]), s) for w, q, s in ws] for ws in words]
    elif probe and np.mean(upside_down(nets, [crops[i] for i in probe])) >= 0.5:
        # The line classifier (a few milliseconds) takes the probe lines for upside down: the
        # recognizer's windows decide before any line is read, so the page is read once
        rotation = _windows_turn(nets, [crops[i] for i in probe], axis)
        reads = _read_crops(nets, crops, turned, flip=rotation == 180)
        texts, words = reads[0], _words(boxes, reads)
    else:
        reads = _read_crops(nets, crops, turned)
        sure = probe and np.mean([reads[0][i][1] for i in probe]) >= SURE
        rotation = 0 if sure or not probe else _windows_turn(nets, [crops[i] for i in probe], axis)
        if rotation == 180:
            reads = _read_crops(nets, crops, turned, flip=True)
        texts, words = reads[0], _words(boxes, reads)
    if scale > 1:  # back to the uploaded image's pixels
        boxes = [_unscale(box, scale, width, height) for box in boxes]
        words = [[(w, _unscale(q, scale, width, height), s) for w, q, s in ws] for ws in words]
    kept = [i for i, (text, score, *_) in enumerate(texts) if text.strip() and score >= MIN_SCORE]
    order, block = reading_order([to_upright(boxes[i], rotation, width, height) for i in kept])
    lines = [Line(texts[kept[k]][0], boxes[kept[k]], texts[kept[k]][1], block[k], words[kept[k]]) for k in order]
    return Page(lines, rotation)


def _unscale(box: np.ndarray, scale: float, width: int, height: int) -> np.ndarray:
    return np.clip(np.round(box / scale), 0, [width - 1, height - 1]).astype(np.int32)
