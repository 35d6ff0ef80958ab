"""ppocr on ONNX Runtime (the CPU's default) and on torch: same outputs, weights from the segment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engine.models.base import BadInput
from engine.models.ppocr import PPOCRAdapter
from engine.models.ppocr import adapter as adapter_module
from engine.models.ppocr.detect import det_input
from engine.models.ppocr.model import PPOCRModule
from engine.models.ppocr.nets import TorchNets
from engine.models.ppocr.onnx_nets import OrtNets
from engine.models.ppocr.orientation import window
from engine.models.ppocr.pipeline import read_page
from engine.models.ppocr.recognize import normalize_line
from engine.runtime import EngineRuntime
from ipc.weights import unlink_segment
from tests.engine.test_ppocr import (  # noqa: F401  (fixtures)
    CHINESE,
    CPU,
    ENGLISH,
    INVOICE,
    SERIF,
    adapter,
    load_rgb,
    module,
    render,
    weights,
)
from tests.engine.test_ppocr_layout import two_columns
from tests.helpers import SegmentGuard, shm  # noqa: F401  (fixture)

PAGES = {
    "invoice": lambda: render(INVOICE, "DejaVuSans.ttf"),
    "english": lambda: render(ENGLISH, "DejaVuSans.ttf"),
    "serif": lambda: render(SERIF, "DejaVuSerif.ttf"),
    "chinese": lambda: load_rgb("ppocr_chinese.png"),
    "scanned": lambda: load_rgb("ppocr_page.png"),
    "two-columns": two_columns,
}


def test_the_cpu_runs_onnxruntime_by_default(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    assert isinstance(module.nets, OrtNets)
    assert PPOCRAdapter({"backend": "torch"}).backend(CPU) == "torch"
    assert PPOCRAdapter().backend(torch.device("cuda")) == "torch"  # no CUDA needed to decide
    with pytest.raises(BadInput, match="one of auto, onnxruntime, torch"):
        PPOCRAdapter({"backend": "tensorrt"}).backend(CPU)
    with pytest.raises(BadInput, match="CPU only"):
        PPOCRAdapter({"backend": "onnxruntime"}).backend(torch.device("cuda"))


def test_networks_agree(module: PPOCRModule) -> None:
    ours, theirs = module.nets, TorchNets(module, CPU)
    page = render(INVOICE, "DejaVuSans.ttf")[:, :, ::-1]
    det = det_input(page)
    lines = np.stack([normalize_line(page[40 + 60 * i : 90 + 60 * i, 20:700], 720) for i in range(4)])
    with torch.inference_mode():
        np.testing.assert_allclose(ours.det(det), theirs.det(det), rtol=0, atol=1e-4)
        (p_ort, k_ort), (p_torch, k_torch) = ours.rec(lines), theirs.rec(lines)
        np.testing.assert_array_equal(k_ort, k_torch)
        np.testing.assert_allclose(p_ort, p_torch, rtol=0, atol=1e-4)
        np.testing.assert_allclose(ours.cls(lines[:, :, :, :192]), theirs.cls(lines[:, :, :, :192]), atol=1e-5)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_both_backends_read_the_test_pages_alike(module: PPOCRModule, page: str) -> None:
    image = PAGES[page]()
    with torch.inference_mode():
        ours, theirs = read_page(module.nets, image), read_page(TorchNets(module, CPU), image)
    assert [(line.text, line.box.tolist()) for line in ours.lines] == [
        (line.text, line.box.tolist()) for line in theirs.lines
    ]
    assert ours.rotation == theirs.rotation == 0


def test_sessions_read_the_weights_where_they_are_bound(module: PPOCRModule) -> None:
    """The graphs carry no weights: each initializer is given as a view of the bound tensor."""
    assert isinstance(module.nets, OrtNets)
    bound = {t.data_ptr() for t in module.state_dict().values()}
    for part, session in module.nets.sessions.items():
        assert session.arrays, part
        assert all(array.ctypes.data in bound for array in session.arrays), part


def test_cached_graphs_are_weightless(adapter: PPOCRAdapter, module: PPOCRModule) -> None:
    folder = adapter._cache_dir() / adapter_module.GRAPHS_DIR
    files = sorted(folder.glob("*.onnx"))
    assert {f.name.split("-")[0] for f in files} >= {"det", "rec", "cls"}
    for path in files:
        assert path.stat().st_size < 1_000_000  # the weights are 32 MB
        model = onnx.load(str(path), load_external_data=False)
        external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external and all(not t.raw_data for t in external)


def _rows_read(module: PPOCRModule, image: np.ndarray) -> tuple[int, int]:
    """(page rotation, line images the recognizer read for it)."""
    calls: list[int] = []
    nets = module.nets
    assert nets is not None

    class Counting:
        backend, characters = nets.backend, nets.characters
        det, cls, release = nets.det, nets.cls, nets.release

        def rec(self, pixels: np.ndarray):
            calls.append(pixels.shape[0])
            return nets.rec(pixels)

    with torch.inference_mode():
        page = read_page(Counting(), image)  # type: ignore[arg-type]
    return page.rotation, sum(calls)


def test_an_upright_page_reads_no_probe_windows(module: PPOCRModule) -> None:
    """Lines read upright with confidence settle the page: no reading both ways."""
    assert _rows_read(module, render(INVOICE, "DejaVuSans.ttf")) == (0, len(INVOICE))


def test_an_upside_down_page_reads_its_lines_once(module: PPOCRModule) -> None:
    """The classifier's guess puts the windows (4 probes, both ways) first: each line is read once."""
    image = np.ascontiguousarray(np.rot90(render(ENGLISH, "DejaVuSans.ttf"), 2))
    assert _rows_read(module, image) == (180, len(ENGLISH) + 2 * 4)


def test_a_probe_window_is_the_middle_of_its_line() -> None:
    crop = np.arange(30 * 500).reshape(30, 500)
    middle = window(crop)
    assert middle.shape == (30, 200)  # 320 / 48 of its height
    assert middle[0, 0] == crop[0, 150]
    assert window(crop[:, :100]).shape == (30, 100)  # a short line whole


@pytest.fixture
def runtime(shm: SegmentGuard) -> Iterator[EngineRuntime]:
    rt = EngineRuntime()
    yield rt
    rt.close()


def test_restore_reads_no_file(
    runtime: EngineRuntime,
    shm: SegmentGuard,
    weights: Path,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    (cache / adapter_module.WEIGHTS_DIR).mkdir(parents=True)
    os.symlink(weights, cache / adapter_module.WEIGHTS_DIR / weights.name)
    options = {"cache_dir": str(cache)}
    segment = shm.name("ort-restore")
    image = render(ENGLISH, "DejaVuSans.ttf")
    png = _png(image)
    runtime.load("ppocr", segment, "cpu", options)
    first = runtime.infer("ppocr", png, {})["text"]
    graphs = cache / adapter_module.WEIGHTS_DIR / adapter_module.GRAPHS_DIR
    assert len(list(graphs.glob("*.onnx"))) == 3
    for path in graphs.iterdir():
        path.unlink()
    runtime.offload("ppocr")
    assert runtime.alive_tensors("ppocr") == 0  # the sessions let go of the segment's views
    runtime.restore("ppocr", segment, "cpu", options)
    assert runtime.infer("ppocr", png, {})["text"] == first == "\n".join(ENGLISH)
    assert not list(graphs.iterdir())  # nothing exported or read again
    runtime.close()
    unlink_segment(segment)


def test_a_torn_cached_graph_is_exported_again(weights: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / adapter_module.WEIGHTS_DIR).mkdir(parents=True)
    os.symlink(weights, cache / adapter_module.WEIGHTS_DIR / weights.name)
    first = _bound(PPOCRAdapter({"cache_dir": str(cache)}))
    graphs = cache / adapter_module.WEIGHTS_DIR / adapter_module.GRAPHS_DIR
    rec = next(graphs.glob("rec-*.onnx"))
    good = rec.read_bytes()
    rec.write_bytes(good[: len(good) // 2])
    second = _bound(PPOCRAdapter({"cache_dir": str(cache)}))
    assert rec.read_bytes() == good
    image = render(SERIF, "DejaVuSerif.ttf")
    with torch.inference_mode():
        assert [line.text for line in read_page(second.nets, image).lines] == SERIF  # type: ignore[arg-type]
    del first


def _bound(adapter: PPOCRAdapter) -> PPOCRModule:
    from safetensors.torch import load_file

    module = adapter.build_skeleton()
    module.load_state_dict(load_file(adapter.weight_files()[0]), assign=True, strict=True)
    adapter.after_bind(module, CPU)
    assert isinstance(module, PPOCRModule)
    return module


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_unwritable_graph_cache_still_runs(weights: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / adapter_module.WEIGHTS_DIR).mkdir(parents=True)
    os.symlink(weights, cache / adapter_module.WEIGHTS_DIR / weights.name)
    (cache / adapter_module.WEIGHTS_DIR / adapter_module.GRAPHS_DIR).write_text("a file where the folder goes")
    module = _bound(PPOCRAdapter({"cache_dir": str(cache)}))
    with torch.inference_mode():
        assert [line.text for line in read_page(module.nets, render(SERIF, "DejaVuSerif.ttf")).lines] == SERIF  # type: ignore[arg-type]
