"""One image through detection, cropping, recognition and reading order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .detect import boxes_from_prob, det_input
from .model import PPOCRModule
from .recognize import crop_line, ctc_decode, rec_batches

MIN_SCORE = 0.5  # PaddleOCR's drop_score: lines read with less confidence are left out
ROW_GAP = 10  # PaddleOCR's pixels between tops that start a new row, at the least


@dataclass
class Line:
    text: str
    box: np.ndarray  # 4 x 2 int32, clockwise from top-left, image pixels
    score: float


def reading_order(boxes: list[np.ndarray]) -> list[int]:
    """Indices of ``boxes`` top to bottom, left to right within a row.

    Boxes whose tops are closer than half a typical line height (``ROW_GAP`` at the least) to the
    one above share its row: PaddleOCR's rule, with the gap scaled for large text.
    """
    if not boxes:
        return []
    tops = np.array([box[0, 1] for box in boxes], dtype=np.float64)
    lefts = np.array([box[0, 0] for box in boxes], dtype=np.float64)
    heights = [np.linalg.norm(box[0] - box[3]) for box in boxes]
    gap = max(ROW_GAP, 0.5 * float(np.median(heights)))
    by_top = np.argsort(tops, kind="stable")
    rows = np.concatenate([[0], np.cumsum(np.diff(tops[by_top]) >= gap)])
    return by_top[np.lexsort((lefts[by_top], rows))].tolist()


def read_lines(module: PPOCRModule, image_rgb: np.ndarray, device: torch.device) -> list[Line]:
    """The text lines of an H x W x 3 uint8 RGB image, in reading order. Call in inference mode."""
    image = np.ascontiguousarray(image_rgb[..., ::-1])  # PaddleOCR's models read BGR
    pixels = torch.from_numpy(det_input(image)).to(device)
    prob = module.det(pixels).last_hidden_state[0, 0].cpu().numpy()
    found = boxes_from_prob(prob, *image.shape[:2])
    boxes = [found[i][0] for i in reading_order([box for box, _ in found])]
    crops = [crop_line(image, box) for box in boxes]
    results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    for indices, batch in rec_batches(crops):
        probs = module.rec(torch.from_numpy(batch).to(device)).last_hidden_state.cpu().numpy()
        for index, line_probs in zip(indices, probs):
            results[index] = ctc_decode(line_probs, module.characters)
    return [Line(text, box, score) for box, (text, score) in zip(boxes, results) if text.strip() and score >= MIN_SCORE]
