"""The text-line orientation classifier rapidocr ships (``ch_ppocr_mobile_v2.0_cls_mobile.onnx``).

PaddleOCR's MobileNetV3-small (scale 0.35) that says whether a 48 x 192 line crop is upright
("0") or upside down ("180"). Its ONNX graph keeps batch norms unfolded and names every constant
after the Paddle parameter (``conv5_se_1_weights``, ``conv5_expand_bn_scale``...), so the weights
pair with this module by name. The squeeze-excitation gate is Paddle's hard sigmoid
(``0.2 x + 0.5``, clipped), not torch's (``x / 6 + 0.5``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

HEIGHT, WIDTH = 48, 192
LABELS = (0, 180)
BN_EPS = 1e-5
# (Paddle name, kernel, expanded channels, out channels, squeeze-excitation, hard-swish, stride)
_BLOCKS = [
    ("conv2", 3, 8, 8, True, False, (2, 1)),
    ("conv3", 3, 24, 8, False, False, (2, 1)),
    ("conv4", 3, 32, 8, False, False, 1),
    ("conv5", 5, 32, 16, True, True, (2, 1)),
    ("conv6", 5, 88, 16, True, True, 1),
    ("conv7", 5, 88, 16, True, True, 1),
    ("conv8", 5, 40, 16, True, True, 1),
    ("conv9", 5, 48, 16, True, True, 1),
    ("conv10", 5, 104, 32, True, True, (2, 1)),
    ("conv11", 5, 200, 32, True, True, 1),
    ("conv12", 5, 200, 32, True, True, 1),
]
STEM, LAST = 8, 200


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride=1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout, eps=BN_EPS))


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.clamp(0.2 * gate + 0.5, 0, 1)


class _Block(nn.Module):
    def __init__(self, cin: int, kernel: int, mid: int, cout: int, se: bool, hswish: bool, stride) -> None:
        super().__init__()
        self.expand = _conv_bn(cin, mid)
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.se = _SqueezeExcite(mid) if se else None
        self.linear = _conv_bn(mid, cout)
        self.act = nn.Hardswish() if hswish else nn.ReLU()
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.depthwise(self.act(self.expand(x))))
        if self.se is not None:
            y = self.se(y)
        y = self.linear(y)
        return x + y if self.residual else y


class LineOrientation(nn.Module):
    """N x 3 x 48 x W (BGR, scaled to [-1, 1]) -> N x 2 probabilities of (upright, upside down)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(3, STEM, 3, 2)
        blocks, cin = [], STEM
        for _, kernel, mid, cout, se, hswish, stride in _BLOCKS:
            blocks.append(_Block(cin, kernel, mid, cout, se, hswish, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.last = _conv_bn(cin, LAST)
        self.fc = nn.Linear(LAST, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.hardswish(self.stem(x))
        x = nn.functional.hardswish(self.last(self.blocks(x)))
        x = nn.functional.max_pool2d(x, 2, 2).mean((2, 3))
        return torch.softmax(self.fc(x), dim=1)


def _paddle_names() -> dict[str, str]:
    """torch state-dict key -> Paddle constant name in the ONNX graph."""
    names: dict[str, str] = {}

    def conv_bn(prefix: str, paddle: str, bn: str) -> None:
        names[f"{prefix}.0.weight"] = f"{paddle}_weights"
        for key, suffix in (
            ("weight", "scale"),
            ("bias", "offset"),
            ("running_mean", "mean"),
            ("running_var", "variance"),
        ):
            names[f"{prefix}.1.{key}"] = f"{bn}_{suffix}"

    conv_bn("stem", "conv1", "conv1_bn")
    for index, (paddle, *_rest) in enumerate(_BLOCKS):
        for part in ("expand", "depthwise", "linear"):
            conv_bn(f"blocks.{index}.{part}", f"{paddle}_{part}", f"{paddle}_{part}_bn")
        if _rest[3]:
            for part, se in (("reduce", "se_1"), ("expand", "se_2")):
                names[f"blocks.{index}.se.{part}.weight"] = f"{paddle}_{se}_weights"
                names[f"blocks.{index}.se.{part}.bias"] = f"{paddle}_{se}_offset"
    conv_bn("last", "conv_last", "conv_last_bn")
    names["fc.weight"], names["fc.bias"] = "fc_0.w_0", "fc_0.b_0"
    return names


def classifier_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``LineOrientation`` state dict from the ONNX file's named constants."""
    graph = onnx.load(str(path)).graph
    consts = {
        node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in graph.node if node.op_type == "Constant"
    }
    consts |= {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    eps = {
        round(a.f, 9)
        for node in graph.node
        if node.op_type == "BatchNormalization"
        for a in node.attribute
        if a.name == "epsilon"
    }
    if any(np.float32(e) != np.float32(BN_EPS) for e in eps):
        raise ValueError(f"{path.name}: batch norm eps {eps} != {BN_EPS}")
    state = {}
    for key, paddle in _paddle_names().items():
        if paddle not in consts:
            raise ValueError(f"{path.name}: no constant {paddle} for {key}")
        value = np.array(consts[paddle], dtype=np.float32)
        state[key] = torch.from_numpy(value.T.copy() if key == "fc.weight" else value)
    return state
