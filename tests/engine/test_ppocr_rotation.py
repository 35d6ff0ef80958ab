"""Pages turned by 90, 180 and 270 degrees read like the upright page; boxes stay in the upload's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.models.ppocr import PPOCRAdapter
from engine.models.ppocr.model import PPOCRModule
from engine.models.ppocr.orientation import from_upright, to_upright
from tests.engine.test_ppocr import INVOICE, adapter, load_rgb, module, read, render, weights  # noqa: F401
from tests.engine.test_ppocr_layout import two_columns

PAGES = {
    "invoice": lambda: render(INVOICE, "DejaVuSans.ttf"),
    "chinese": lambda: load_rgb("ppocr_chinese.png"),
    "scanned": lambda: load_rgb("ppocr_page.png"),
    "two-columns": two_columns,
}
# A corner may move between the upright and the turned page's detections: the detector's input is
# rounded to multiples of 32 pixels, differently for each shape
BOX_SLACK = 6
BOX_SLACK_RATIO = 0.04  # of the line's length


def turned(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` turned clockwise by ``degrees``."""
    return np.ascontiguousarray(np.rot90(image, -degrees // 90))


def test_to_upright_undoes_each_turn() -> None:
    height, width = 100, 200
    upright = np.array([[10, 20], [60, 20], [60, 30], [10, 30]])
    image = np.zeros((height, width), dtype=np.uint8)
    image[20:31, 10:61] = 1
    for degrees in (0, 90, 180, 270):
        rotated = turned(image, degrees)
        ys, xs = np.nonzero(rotated)
        quad = np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()], [xs.min(), ys.max()]])
        back = to_upright(quad, degrees, rotated.shape[1], rotated.shape[0])
        assert back.tolist() == upright.tolist(), degrees
        assert from_upright(upright, degrees, rotated.shape[1], rotated.shape[0]).tolist() == quad.tolist(), degrees


@pytest.mark.parametrize("degrees", [90, 180, 270])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_turned_page_reads_like_upright(adapter: PPOCRAdapter, module: PPOCRModule, page: str, degrees: int) -> None:
    image = PAGES[page]()
    upright = read(adapter, module, image)
    assert upright["rotation"] == 0
    rotated = turned(image, degrees)
    result = read(adapter, module, rotated)
    assert result["rotation"] == degrees
    assert result["text"] == upright["text"]
    height, width = rotated.shape[:2]
    for line, reference in zip(result["lines"], upright["lines"]):
        assert all(0 <= x < width and 0 <= y < height for x, y in line["box"])  # the turned image's pixels
        back = to_upright(np.array(line["box"]), degrees, width, height)
        reference_box = np.array(reference["box"])
        slack = BOX_SLACK + BOX_SLACK_RATIO * np.ptp(reference_box, axis=0).max()
        assert np.abs(back - reference_box).max() <= slack, (line, reference)
        label_box = [*np.min(line["box"], axis=0).tolist(), *np.max(line["box"], axis=0).tolist()]
        assert {"label": line["text"], "box": label_box} in result["boxes"]


def test_classifier_matches_onnxruntime(module: PPOCRModule) -> None:
    import onnxruntime as ort

    from engine.models.ppocr import adapter as adapter_module

    pixels = np.random.RandomState(0).uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)
    path = adapter_module.rapidocr_models_dir() / adapter_module.CLS_ONNX
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: pixels})[0]
    with torch.inference_mode():
        got = module.cls(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
