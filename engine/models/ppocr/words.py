"""Word boxes of a recognized line, from where the recognizer's CTC steps put each character.

The recognizer reads a line crop (height 48, padded on the right to its batch's width) as T steps
across the padded width; a kept step is one character (``ctc_steps``). A character's centre is its
step's centre as a fraction of the crop's content width; a word runs from half way between the
space before it and its first character to half way between its last character and the space
after it (the line's ends for the first and last words). The fractions go along the crop's reading
direction, and the crop maps back onto the line's quad: along its top and bottom edges, or along
its left and right edges for a line turned sideways (``recognize.crop_line`` turns those a quarter).
"""

from __future__ import annotations

import math

import numpy as np

from .model import BLANK
from .orientation import _clockwise
from .recognize import HEIGHT
from .recognize import sideways as _is_sideways


def ctc_steps(probability: np.ndarray, best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step indices and probabilities of the characters greedy CTC keeps (as ``ctc_decode``)."""
    keep = best != BLANK
    keep[1:] &= best[1:] != best[:-1]
    steps = np.flatnonzero(keep)
    return steps, probability[steps]


def char_centres(steps: np.ndarray, steps_total: int, input_width: int, crop: np.ndarray) -> list[float]:
    """Each character's centre as a fraction (0..1) of the crop's width, left to right as read."""
    content = min(input_width, math.ceil(HEIGHT * crop.shape[1] / crop.shape[0]))  # as ``normalize_line``
    pixels_per_step = input_width / steps_total
    return [min(1.0, (float(s) + 0.5) * pixels_per_step / content) for s in steps]


def word_spans(text: str, centres: list[float], probs: list[float]) -> list[tuple[str, float, float, float]]:
    """(word, start, end, mean probability) of each run of non-space characters, start and end as
    fractions of the line's reading length."""
    if len(centres) != len(text):
        return []
    words = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j + 1 < len(text) and not text[j + 1].isspace():
            j += 1
        start = 0.0 if i == 0 else (centres[i - 1] + centres[i]) / 2
        end = 1.0 if j == len(text) - 1 else (centres[j] + centres[j + 1]) / 2
        words.append((text[i : j + 1], max(0.0, start), min(1.0, max(start, end)), float(np.mean(probs[i : j + 1]))))
        i = j + 1
    return words


def word_quad(box: np.ndarray, start: float, end: float, sideways: bool) -> np.ndarray:
    """The part of the line quad ``box`` (corners clockwise from top-left) between two fractions of
    its reading length, corners clockwise from top-left."""
    p = box.astype(np.float64)
    if sideways:  # read top to bottom: along p0 -> p3 and p1 -> p2
        a, b, c, d = p[0], p[3], p[1], p[2]
    else:  # along p0 -> p1 and p3 -> p2
        a, b, c, d = p[0], p[1], p[3], p[2]
    quad = np.array([a + (b - a) * start, a + (b - a) * end, c + (d - c) * end, c + (d - c) * start])
    return _clockwise(np.round(quad))


def line_words(
    box: np.ndarray, text: str, centres: list[float], probs: list[float], flipped: bool
) -> list[tuple[str, np.ndarray, float]]:
    """(word, quad, score) of a line read from its crop (``flipped``: the crop was read turned by
    180 degrees, so its reading runs from the quad's far end)."""
    sideways = _is_sideways(box)
    words = []
    for word, start, end, score in word_spans(text, centres, probs):
        if flipped:
            start, end = 1.0 - end, 1.0 - start
        words.append((word, word_quad(box, start, end, sideways), score))
    return words
