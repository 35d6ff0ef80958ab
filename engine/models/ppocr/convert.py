"""Convert rapidocr's PP-OCRv6-small ONNX files into one safetensors file for ``PPOCRModule``.

The ONNX layers (``onnx_graph.read_layers``) pair with the torch modules in the order both run,
checked by kind and shape: torch's order comes from forward pre-hooks on a dummy input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from .classifier import classifier_state
from .layout_net import split_graph
from .model import PPOCRModule
from .onnx_graph import OnnxLayer, read_characters, read_layers

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_LEAVES = (*_CONVS, nn.BatchNorm2d, nn.Linear, nn.LayerNorm)
# Paddle fuses the FPN levels from p5 down to p2, transformers from p2 up: these groups pair reversed.
_REVERSED_GROUPS = ("model.neck.insert_conv.", "model.neck.input_conv.")


def execution_order(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The weighted leaf modules of ``model`` in the order a forward pass calls them."""
    order: list[tuple[str, nn.Module]] = []
    handles = [
        module.register_forward_pre_hook(lambda mod, args, name=name: order.append((name, mod)))
        for name, module in model.named_modules()
        if isinstance(module, _LEAVES)
    ]
    with torch.no_grad():
        model(example)
    for handle in handles:
        handle.remove()
    return order


def paddle_neck_order(order: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Reorder each neck group by descending level, keeping the order inside a level."""
    order = list(order)
    for group in _REVERSED_GROUPS:
        slots = [i for i, (name, _) in enumerate(order) if name.startswith(group)]
        members = sorted((order[i] for i in slots), key=lambda item: _level(item[0], group), reverse=True)
        for slot, member in zip(slots, members):
            order[slot] = member
    return order


def _level(name: str, group: str) -> int:
    return int(name[len(group) :].split(".")[0])


def _take(layers: list[OnnxLayer], kind: str, module_name: str) -> OnnxLayer:
    if not layers or layers[0].kind != kind:
        found = layers[0].kind if layers else "nothing"
        raise ValueError(f"{module_name}: expected an ONNX {kind} layer, found {found}")
    return layers.pop(0)


def _put(state: dict[str, torch.Tensor], module: nn.Module, prefix: str, name: str, value: np.ndarray) -> None:
    expected = getattr(module, name).shape
    tensor = torch.from_numpy(np.array(value, dtype=np.float32))  # a writable copy
    if tensor.shape != expected:
        raise ValueError(f"{prefix}{name}: ONNX shape {tuple(tensor.shape)} != torch {tuple(expected)}")
    state[prefix + name] = tensor


def _check_eps(name: str, module: nn.Module, eps: float | None) -> None:
    if eps is not None and np.float32(eps) != np.float32(module.eps):
        raise ValueError(f"{name}: ONNX eps {eps} != torch eps {module.eps}")


def _identity_norm(module: nn.BatchNorm2d, bias: np.ndarray) -> dict[str, np.ndarray]:
    """A batch norm that only adds ``bias``: running_var + eps is exactly 1 in float32."""
    ones = np.ones(module.num_features, dtype=np.float32)
    var = np.float32(1) - np.float32(module.eps)
    return {"weight": ones, "bias": bias, "running_mean": ones * 0, "running_var": ones * var}


def _pair_conv(
    state: dict[str, torch.Tensor],
    layers: list[OnnxLayer],
    conv: tuple[str, nn.Module],
    norm: tuple[str, nn.BatchNorm2d] | None,
) -> None:
    """A convolution, and the batch norm after it: real (an ONNX BatchNormalization) or folded."""
    name, module = conv
    layer = _take(layers, "conv", name)
    _put(state, module, name + ".", "weight", layer.tensors["weight"])
    bias = layer.tensors.get("bias")
    if norm is not None:
        norm_name, norm_module = norm
        if layers and layers[0].kind == "bn":
            bn = _take(layers, "bn", norm_name)
            _check_eps(norm_name, norm_module, bn.eps)
            values = bn.tensors
        else:
            folded = bias if bias is not None else np.zeros(norm_module.num_features)
            values = _identity_norm(norm_module, folded)
        for key, value in values.items():
            _put(state, norm_module, norm_name + ".", key, value)
        # The norm carries the bias; a conv with a bias of its own (ConvTranspose2d) adds zero.
        bias = np.zeros(module.out_channels) if module.bias is not None else None
    if (bias is None) != (module.bias is None):
        raise ValueError(f"{name}: ONNX and torch disagree on having a bias")
    if bias is not None:
        _put(state, module, name + ".", "bias", bias)


def pair(order: list[tuple[str, nn.Module]], layers: list[OnnxLayer]) -> dict[str, torch.Tensor]:
    """The state dict (by module path) that gives the torch modules the ONNX layers' weights."""
    layers = list(layers)
    state: dict[str, torch.Tensor] = {}
    index = 0
    while index < len(order):
        name, module = order[index]
        index += 1
        if isinstance(module, _CONVS):
            follows = order[index] if index < len(order) else None
            norm = follows if follows is not None and isinstance(follows[1], nn.BatchNorm2d) else None
            index += norm is not None
            _pair_conv(state, layers, (name, module), norm)
        elif isinstance(module, (nn.Linear, nn.LayerNorm)):
            layer = _take(layers, "linear" if isinstance(module, nn.Linear) else "norm", name)
            _check_eps(name, module, layer.eps)
            for key, value in layer.tensors.items():
                _put(state, module, name + ".", key, value)
        else:
            raise ValueError(f"{name}: a {type(module).__name__} with no convolution before it")
    if layers:
        raise ValueError(f"{len(layers)} ONNX layers left over after pairing")
    return state


def convert(det_onnx: Path, rec_onnx: Path, cls_onnx: Path, out: Path) -> None:
    """Write the safetensors file for ``PPOCRModule`` at ``out`` (atomically)."""
    module = PPOCRModule().eval()
    det_order = paddle_neck_order(execution_order(module.det, torch.zeros(1, 3, 64, 64)))
    rec_order = execution_order(module.rec, torch.zeros(1, 3, 48, 320))
    state = {f"det.{k}": v for k, v in pair(det_order, read_layers(det_onnx)).items()}
    state |= {f"rec.{k}": v for k, v in pair(rec_order, read_layers(rec_onnx)).items()}
    state |= {f"cls.{k}": v for k, v in classifier_state(cls_onnx).items()}
    characters = [chr(0), *read_characters(rec_onnx), " "]  # blank first, space appended: as rapidocr
    state["charset"] = torch.tensor([ord(c) for c in characters], dtype=torch.int32)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or any(not key.endswith("num_batches_tracked") for key in missing):
        raise ValueError(f"conversion left keys out: {missing} {unexpected}")
    save_atomic({key: value.contiguous() for key, value in module.state_dict().items()}, out)


def convert_layout(layout_onnx: Path, out: Path) -> None:
    """Write the layout net's weights and weightless graph (``layout_net.split_graph``) at ``out``."""
    save_atomic({f"layout.{k}": v.contiguous() for k, v in split_graph(layout_onnx).items()}, out)


def save_atomic(tensors: dict[str, torch.Tensor], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any other
        os.replace(tmp, out)  # readers see no file or the whole file, never half of one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
