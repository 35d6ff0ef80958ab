"""A model of N GB of random weights, to show how each transition's cost grows with size.

Used by ``bench/`` only. Its weights are written once to a safetensors file (streamed, so a 4 GB
model never sits in memory twice); inference touches a slice of every tensor on the device so a
result proves the weights are really there.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from engine.models.base import ModelAdapter

_CHUNK_ELEMS = 64 << 20  # 256 MB of float32 per tensor


def write_synthetic(path: Path, nbytes: int, seed: int = 0) -> None:
    """Stream ``nbytes`` of random float32 tensors into a safetensors file at ``path``."""
    n_elems = max(nbytes // 4, 1)
    sizes = [min(_CHUNK_ELEMS, n_elems - i) for i in range(0, n_elems, _CHUNK_ELEMS)]
    header, offset = {}, 0
    for i, size in enumerate(sizes):
        header[f"weights.{i}"] = {"dtype": "F32", "shape": [size], "data_offsets": [offset, offset + size * 4]}
        offset += size * 4
    raw = orjson.dumps(header)
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(seed)
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for size in sizes:
            fh.write(rng.random(size, dtype=np.float32).tobytes())
    os.replace(tmp, path)


class SyntheticModule(torch.nn.Module):
    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(n, device="meta"), requires_grad=False) for n in sizes]
        )


class SyntheticAdapter(ModelAdapter):
    name = "synthetic"
    prompt_types = ("ocr", "free", "document")

    def _path(self) -> Path:
        gb = float(self.options.get("gb", 1))
        folder = Path(self.options.get("dir") or os.environ.get("DSOCR_CACHE_DIR", "~/.cache/dsocr")).expanduser()
        return folder / f"synthetic-{gb:g}gb.safetensors"

    def _sizes(self) -> list[int]:
        n_elems = max(int(float(self.options.get("gb", 1)) * 2**30) // 4, 1)
        return [min(_CHUNK_ELEMS, n_elems - i) for i in range(0, n_elems, _CHUNK_ELEMS)]

    def weight_files(self) -> list[Path]:
        path = self._path()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_synthetic(path, sum(self._sizes()) * 4)
        return [path]

    def build_skeleton(self) -> torch.nn.Module:
        return SyntheticModule(self._sizes()).eval()

    def after_bind(self, module: torch.nn.Module, device: torch.device) -> None:
        # bind_delay_s: a slow load and restore on demand, to kill an engine in the middle of one
        time.sleep(float(self.options.get("bind_delay_s", 0)))

    def infer(
        self, module: torch.nn.Module, image: np.ndarray, options: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        # delay_s: a slow model on demand, to test what happens around a long inference
        time.sleep(float(self.options.get("delay_s", 0)))
        checksum = float(sum(w[:1024].sum() for w in module.weights))
        h, w = image.shape[:2]
        text = f"synthetic {checksum:.3f}"
        return {
            "text": text,
            "raw_text": text,
            "lines": [{"text": text, "box": [[0, 0], [w, 0], [w, h], [0, h]], "score": 1.0}],
            "boxes": [{"label": text, "box": [0, 0, w, h]}],
        }
