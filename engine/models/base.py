"""The adapter interface: one model family, and nothing about lifecycles or shared memory.

An adapter says where the weights for the first load come from (safetensors files), how to build
the module skeleton on the ``meta`` device (the engine binds the weights into it from the shared
segment), and how to turn a decoded image plus options into a result dict. The engine owns
everything else: the segment, the device, the state.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ipc.catalog import model_info
from ipc.errors import BadInput, UnknownModel, Unsupported, WeightsUnavailable

__all__ = ["BadInput", "ModelAdapter", "PartialCallback", "UnknownModel", "Unsupported", "WeightsUnavailable"]


# (index of the request in its batch, text generated since the last call): token streaming
PartialCallback = Callable[[int, str], None]


class ModelAdapter(abc.ABC):
    """One model family. Instances are cheap: nothing heavy happens in ``__init__``."""

    name: ClassVar[str]
    # Prompt types this model answers; others get a 400 that names a model that can. Read from the
    # model's catalog entry (ipc/catalog.py), the one table of them, unless the class sets its own.
    prompt_types: ClassVar[tuple[str, ...]] = ("ocr",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        info = model_info(cls.__dict__.get("name", ""))
        if info is not None and "prompt_types" not in cls.__dict__:
            cls.prompt_types = info.prompt_types

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @abc.abstractmethod
    def weight_files(self) -> list[Path]:
        """Safetensors files holding every tensor the skeleton needs (may convert or fetch once).

        Raises :class:`WeightsUnavailable` when they cannot be had.
        """

    @abc.abstractmethod
    def build_skeleton(self) -> torch.nn.Module:
        """The module with every parameter and buffer on the ``meta`` device, in eval mode."""

    def dtype_for(self, device: torch.device) -> torch.dtype | None:
        """The dtype to run in on ``device``; None keeps the stored dtype."""
        return None

    def after_bind(self, module: torch.nn.Module, device: torch.device) -> None:
        """Fix-ups after the weights are bound (recompute non-persistent buffers...)."""

    @abc.abstractmethod
    def infer(
        self, module: torch.nn.Module, image: np.ndarray, options: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        """Run on ``image`` (H x W x 3 uint8 RGB) and return the result.

        The result holds ``text`` (all text in reading order), ``raw_text``, ``lines``
        (``[{"text", "box": [[x, y] x 4], "score"}]``, reading order) and ``boxes``
        (``[{"label", "box": [x1, y1, x2, y2]}]`` in image pixels).
        """

    def batch_limit(self, device: torch.device) -> int:
        """How many requests ``infer_batch`` takes at once on ``device`` (1: no batching)."""
        return 1

    def infer_batch(
        self,
        module: torch.nn.Module,
        images: list[np.ndarray],
        options: list[dict[str, Any]],
        device: torch.device,
        on_partial: PartialCallback | None = None,
    ) -> list[dict[str, Any] | Exception]:
        """Run several requests; item ``i`` answers ``images[i]``: its result, or the exception
        that failed that request alone (one bad request never fails the others).

        The default runs them one by one; adapters that gain from batching override it and must
        give exactly the results of the one-by-one run. ``on_partial`` streams text as it is made.
        """
        results: list[dict[str, Any] | Exception] = []
        for image, opts in zip(images, options):
            try:
                results.append(self.infer(module, image, opts, device))
            except Exception as exc:
                results.append(exc)
        return results
