"""One image through detection, cropping, recognition and reading order."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .detect import boxes_from_prob, det_input
from .layout import reading_order
from .model import PPOCRModule
from .orientation import from_upright, page_axis, page_turn, probes, to_upright, upside_down
from .recognize import crop_line, ctc_decode, rec_batches, sideways

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


def upscale_factor(height: int, width: int) -> float:
    longest = max(height, width)
    return min(MAX_UPSCALE, UPSCALE_BELOW / longest) if longest < UPSCALE_BELOW else 1.0


def _channels_last(pixels: torch.Tensor) -> torch.Tensor:
    """NHWC input: oneDNN's convolutions then run on it directly (20% less CPU time for the
    detector than NCHW here). The weights stay as bound, zero-copy views of the shared segment."""
    return pixels.contiguous(memory_format=torch.channels_last)


def detect(module: PPOCRModule, image_bgr: np.ndarray, device: torch.device) -> list[tuple[np.ndarray, float]]:
    """Line quads (image pixels) and their detection scores."""
    pixels = _channels_last(torch.from_numpy(det_input(image_bgr)).to(device))
    prob = module.det(pixels).last_hidden_state[0, 0].cpu().numpy()
    return boxes_from_prob(prob, *image_bgr.shape[:2])


def recognize(module: PPOCRModule, crops: list[np.ndarray], device: torch.device) -> list[tuple[str, float]]:
    """(text, score) of each line crop."""
    results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    for indices, batch in rec_batches(crops):
        probs = module.rec(_channels_last(torch.from_numpy(batch).to(device))).last_hidden_state.cpu().numpy()
        for index, line_probs in zip(indices, probs):
            results[index] = ctc_decode(line_probs, module.characters)
    return results


def _read_crops(
    module: PPOCRModule, crops: list[np.ndarray], turned: list[bool], device: torch.device
) -> list[tuple[str, float]]:
    """(text, score) of line crops of a page read upright: sideways lines (across the page's
    lines) are turned as the line classifier says, the others read as cropped."""
    across = [i for i, side in enumerate(turned) if side]
    crops = list(crops)
    for i, p in zip(across, upside_down(module, [crops[i] for i in across], device)):
        crops[i] = np.rot90(crops[i], 2) if p >= 0.5 else crops[i]
    return recognize(module, crops, device)


def _read_upright(module: PPOCRModule, image: np.ndarray, device: torch.device):
    """Boxes and (text, score) of the lines of an upright page."""
    boxes = [box for box, _ in detect(module, image, device)]
    crops = [crop_line(image, box) for box in boxes]
    return boxes, _read_crops(module, crops, [sideways(box) for box in boxes], device)


@dataclass
class Page:
    lines: list[Line]
    rotation: int  # degrees the page was turned clockwise from upright (and turned back to read)


def read_page(module: PPOCRModule, image_rgb: np.ndarray, device: torch.device) -> Page:
    """The text lines of an H x W x 3 uint8 RGB image, in reading order. Call in inference mode."""
    image = np.ascontiguousarray(image_rgb[..., ::-1])  # PaddleOCR's models read BGR
    height, width = image.shape[:2]
    scale = upscale_factor(height, width)
    if scale > 1:
        size = (round(width * scale), round(height * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    boxes = [box for box, _ in detect(module, image, device)]
    crops = [crop_line(image, box) for box in boxes]
    turned = [sideways(box) for box in boxes]
    lengths = [float(max(crop.shape[:2])) for crop in crops]
    axis = page_axis(turned, lengths)
    probe = probes(turned, lengths, axis)
    if axis:
        # A page turned a quarter: its longest lines read both ways say which quarter; then the
        # page is turned upright and detected again (the detector misses lines of sideways pages).
        both = recognize(module, [crops[i] for i in probe] + [np.rot90(crops[i], 2) for i in probe], device)
        scores = [score for _, score in both]
        rotation = page_turn(axis, scores[: len(probe)], scores[len(probe) :])
        boxes, texts = _read_upright(module, cv2.rotate(image, UNDO_TURN[rotation]), device)
        boxes = [from_upright(box, rotation, image.shape[1], image.shape[0]) for box in boxes]
    else:
        texts = _read_crops(module, crops, turned, device)
        # the longest lines read upside down too: the way the recognizer is surer of is the page's
        reversed_ = recognize(module, [np.rot90(crops[i], 2) for i in probe], device)
        rotation = page_turn(axis, [texts[i][1] for i in probe], [score for _, score in reversed_])
        if rotation == 180:
            for i, text in zip(probe, reversed_):
                texts[i] = text
            rest = [i for i, side in enumerate(turned) if not side and i not in probe]
            for i, text in zip(rest, recognize(module, [np.rot90(crops[i], 2) for i in rest], device)):
                texts[i] = text
    if scale > 1:  # back to the uploaded image's pixels
        boxes = [np.clip(np.round(box / scale), 0, [width - 1, height - 1]).astype(np.int32) for box in boxes]
    kept = [i for i, (text, score) in enumerate(texts) if text.strip() and score >= MIN_SCORE]
    order, block = reading_order([to_upright(boxes[i], rotation, width, height) for i in kept])
    lines = [Line(texts[kept[k]][0], boxes[kept[k]], texts[kept[k]][1], block[k]) for k in order]
    return Page(lines, rotation)


def read_lines(module: PPOCRModule, image_rgb: np.ndarray, device: torch.device) -> list[Line]:
    return read_page(module, image_rgb, device).lines
