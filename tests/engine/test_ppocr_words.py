"""ppocr's word boxes come from the recognizer's CTC steps: each word's box covers its own ink."""

from __future__ import annotations

import numpy as np
from PIL import ImageFont

from engine.models.ppocr import PPOCRAdapter
from engine.models.ppocr.model import PPOCRModule
from engine.models.ppocr.words import word_quad, word_spans
from tests.engine.test_ppocr import CPU, FONTS, INVOICE, adapter, module, read, render, weights  # noqa: F401


def test_word_spans_split_at_spaces_between_character_centres() -> None:
    spans = word_spans("ab cd", [0.1, 0.2, 0.5, 0.7, 0.9], [1.0, 0.8, 1.0, 1.0, 0.6])
    assert [(w, round(s, 3), round(e, 3), round(p, 3)) for w, s, e, p in spans] == [
        ("ab", 0.0, 0.35, 0.9),
        ("cd", 0.6, 1.0, 0.8),
    ]
    assert word_spans("ab", [0.5], [1.0]) == []  # positions that do not match the text: no words
    box = np.array([[0, 0], [100, 0], [100, 10], [0, 10]])
    assert word_quad(box, 0.25, 0.5, sideways=False).tolist() == [[25, 0], [50, 0], [50, 10], [25, 10]]
    tall = np.array([[0, 0], [10, 0], [10, 100], [0, 100]])
    assert word_quad(tall, 0.25, 0.5, sideways=True).tolist() == [[0, 25], [10, 25], [10, 50], [0, 50]]


def _ink_columns(line: str, font_size: int = 28) -> list[tuple[int, int]]:
    """Each word's left and right x as drawn by ``render`` (text starts at x = 30)."""
    font = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), font_size)
    spans, x = [], 30.0
    for word in line.split(" "):
        left, _, right, _ = font.getbbox(word)
        spans.append((round(x + left), round(x + right)))
        x += font.getlength(word + " ")
    return spans


def test_words_sit_on_their_own_ink(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    result = read(adapter, module, render(INVOICE, "DejaVuSans.ttf"))
    for line, expected in zip(result["lines"], INVOICE):
        assert " ".join(w["text"] for w in line["words"]) == line["text"] == expected
        for word, (left, right) in zip(line["words"], _ink_columns(expected)):
            xs = [p[0] for p in word["box"]]
            # within 8 pixels (a third of a character) of the word's ink; spread evenly they were off by 20+
            assert abs(min(xs) - left) <= 8 and abs(max(xs) - right) <= 8, (word, left, right)
            assert 0.5 <= word["score"] <= 1.0


def test_words_of_a_page_turned_upside_down_run_right_to_left(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    image = render(INVOICE, "DejaVuSans.ttf")
    turned = read(adapter, module, np.ascontiguousarray(np.rot90(image, 2)))
    assert turned["rotation"] == 180
    words = turned["lines"][0]["words"]
    width = image.shape[1]
    for word, (left, right) in zip(words, _ink_columns(INVOICE[0])):
        xs = [p[0] for p in word["box"]]
        assert abs(min(xs) - (width - 1 - right)) <= 8 and abs(max(xs) - (width - 1 - left)) <= 8, word
