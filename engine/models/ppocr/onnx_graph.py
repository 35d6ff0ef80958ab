"""Read the weights of a Paddle2ONNX graph as a list of layers, in execution order.

Paddle2ONNX folds each batch norm into the convolution before it (a ``Conv`` and an ``Add`` of a
``(1, C, 1, 1)`` constant), writes linear layers as ``MatMul`` + ``Add`` and layer norms as their
arithmetic (``... Div``, ``Mul`` by the weight, ``Add`` of the bias). This module recognises those
patterns; pairing the layers with torch modules is ``convert``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass
class OnnxLayer:
    kind: str  # "conv" (Conv or ConvTranspose), "bn", "linear" or "norm"
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    eps: float | None = None


class _Graph:
    """Nodes, constants, producers and Identity aliases of one graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.alias: dict[str, str] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Identity":
                self.alias[node.output[0]] = node.input[0]
            for out in node.output:
                self.producer[out] = node

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(self.resolve(name))

    def split(self, node: onnx.NodeProto) -> tuple[np.ndarray | None, str | None]:
        """The constant operand of a binary node and the resolved name of its other operand."""
        first, second = (self.resolve(name) for name in node.input)
        if second in self.consts:
            return self.consts[second], first
        if first in self.consts:
            return self.consts[first], second
        return None, None

    def op_of(self, name: str) -> str | None:
        node = self.producer.get(name)
        return node.op_type if node is not None else None


def _weighted_layer(
    graph: _Graph, node: onnx.NodeProto, const: np.ndarray | None, other: str | None, eps: float | None
) -> OnnxLayer | None:
    """The layer whose weight ``node`` applies, if it applies one."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        tensors = {"weight": graph.const(node.input[1])}
        if len(node.input) > 2:
            tensors["bias"] = graph.const(node.input[2])
        return OnnxLayer("conv", tensors)
    if op == "BatchNormalization":
        names = ("weight", "bias", "running_mean", "running_var")
        eps = next(a.f for a in node.attribute if a.name == "epsilon")
        return OnnxLayer("bn", {k: graph.const(v) for k, v in zip(names, node.input[1:])}, eps)
    if op == "MatMul" and (weight := graph.const(node.input[1])) is not None:
        return OnnxLayer("linear", {"weight": weight.T})
    # A layer norm's weight: a per-channel Mul right after its normalising Div.
    if op == "Mul" and const is not None and const.ndim == 1 and const.size > 1 and graph.op_of(other) == "Div":
        return OnnxLayer("norm", {"weight": const}, eps)
    return None


def read_layers(path: Path) -> list[OnnxLayer]:
    graph = _Graph(onnx.load(str(path)).graph)
    layers: list[OnnxLayer] = []
    biased: dict[str, OnnxLayer] = {}  # output name -> the layer that an Add of a constant biases
    eps: float | None = None  # a layer norm adds its eps (after a ReduceMean) before its weight
    for node in graph.nodes:
        const, other = graph.split(node) if node.op_type in ("Add", "Mul") else (None, None)
        if node.op_type == "Add" and const is not None:
            if other in biased:
                biased.pop(other).tensors["bias"] = const.reshape(-1)
            elif const.size == 1 and graph.op_of(other) == "ReduceMean":
                eps = float(const.reshape(()))
            continue
        layer = _weighted_layer(graph, node, const, other, eps)
        if layer is not None:
            layers.append(layer)
            if layer.kind != "bn":
                biased[graph.resolve(node.output[0])] = layer
    return layers


def read_characters(path: Path) -> list[str]:
    """The recognition dictionary in the model's metadata (without CTC blank and space)."""
    model = onnx.load(str(path), load_external_data=False)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return metadata["character"].splitlines()  # splitlines, as rapidocr reads it
