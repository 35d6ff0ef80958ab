"""The three networks as the pipeline calls them: NumPy in, small NumPy out, on torch or ONNX Runtime.

Each network is wrapped so that what leaves it is what the pipeline reads: the detector's
probability map, the recognizer's best class and its probability per time step (not the
T x 18,710 probabilities: copying those out and scanning them in NumPy cost more than the
reduction), the line classifier's probability of "upside down". ``TorchNets`` runs the wrappers
in torch (CUDA, or the CPU when asked); ``onnx_nets.OrtNets`` runs their ONNX exports.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from .model import PPOCRModule


class DetProbability(nn.Module):
    """1 x 3 x H x W -> H x W text probability."""

    def __init__(self, module: PPOCRModule) -> None:
        super().__init__()
        self.det = module.det

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.det(pixels).last_hidden_state[0, 0]


class RecBest(nn.Module):
    """N x 3 x 48 x W -> (N x T probability of the best class, N x T best class)."""

    def __init__(self, module: PPOCRModule) -> None:
        super().__init__()
        self.rec = module.rec

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        best = self.rec(pixels).last_hidden_state.max(dim=-1)
        return best.values, best.indices


class ClsUpsideDown(nn.Module):
    """N x 3 x 48 x 192 -> N probabilities that the line is upside down."""

    def __init__(self, module: PPOCRModule) -> None:
        super().__init__()
        self.cls = module.cls

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.cls(pixels)[:, 1]


class Nets(Protocol):
    backend: str
    characters: list[str]  # the recognizer's class strings (``PPOCRModule.decode_charset``)

    def det(self, pixels: np.ndarray) -> np.ndarray: ...

    def rec(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def cls(self, pixels: np.ndarray) -> np.ndarray: ...

    def release(self) -> None:
        """After a page: give back what the runtime keeps for the next call."""


class TorchNets:
    """The wrappers in torch on ``device``. Inputs go in channels-last: oneDNN's convolutions run on
    NHWC directly (20% less CPU time for the detector than NCHW). Call in inference mode."""

    backend = "torch"

    def __init__(self, module: PPOCRModule, device: torch.device) -> None:
        self.device, self.characters = device, module.characters
        self._det, self._rec, self._cls = DetProbability(module), RecBest(module), ClsUpsideDown(module)

    def _input(self, pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(pixels).to(self.device).contiguous(memory_format=torch.channels_last)

    def det(self, pixels: np.ndarray) -> np.ndarray:
        return self._det(self._input(pixels)).cpu().numpy()

    def rec(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, indices = self._rec(self._input(pixels))
        return values.cpu().numpy(), indices.cpu().numpy()

    def cls(self, pixels: np.ndarray) -> np.ndarray:
        return self._cls(torch.from_numpy(pixels).to(self.device)).cpu().numpy()

    def release(self) -> None:
        pass  # torch's CPU allocator frees as it goes (``memory.release_free_memory`` trims)
