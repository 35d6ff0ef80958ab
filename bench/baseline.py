"""The upstream approach, reimplemented in a few lines for comparison only (not part of dsocr).

One process holds the model. It is loaded from disk on the first request (``from_pretrained``
style: read the checkpoint, build the module), moved to the CPU after each request
(``model.to("cpu")``) and back to the device before the next one; a release drops it
(``torch.cuda.empty_cache()``) and the next request loads it from disk again.

Run as a worker by ``bench/compare.py``: one command per stdin line (``infer PATH``, ``offload``,
``release``, ``quit``), one JSON line per answer with the seconds it took inside the process.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import torch
from safetensors.torch import load_file

from engine.images import decode_image
from engine.models import create_adapter


class UpstreamBaseline:
    def __init__(self, model: str, options: dict[str, Any], device: str) -> None:
        self.adapter = create_adapter(model, options)
        self.device = torch.device(device)
        self.model: torch.nn.Module | None = None
        self.on_device = False

    def _load(self) -> None:
        state: dict[str, torch.Tensor] = {}
        for path in self.adapter.weight_files():
            # load_file only maps the file; from_pretrained copies every tensor into the module's
            # own memory, so the whole checkpoint is read: clone does the same, tensor by tensor
            for name, tensor in load_file(str(path)).items():
                state[name] = tensor.clone()
        module = self.adapter.build_skeleton()
        module.load_state_dict(state, strict=True, assign=True)
        self.adapter.after_bind(module, torch.device("cpu"))
        self.model = module

    def infer(self, image: bytes) -> dict[str, Any]:
        if self.model is None:
            self._load()
        if not self.on_device:
            self.model.to(self.device)  # type: ignore[union-attr]
            self.on_device = True
        with torch.inference_mode():
            return self.adapter.infer(self.model, decode_image(image), {"prompt_type": "ocr"}, self.device)

    def offload(self) -> None:
        if self.model is not None and self.on_device:
            self.model.to("cpu")
            self.on_device = False
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def release(self) -> None:
        self.model = None
        self.on_device = False
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # the CUDA context stays: this process can never give it back


def worker(model: str, options: dict[str, Any], device: str) -> None:
    baseline = UpstreamBaseline(model, options, device)
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        t0 = time.perf_counter()
        text = None
        if command == "infer":
            text = baseline.infer(Path(arg).read_bytes()).get("text")
        elif command == "offload":
            baseline.offload()
        elif command == "release":
            baseline.release()
        elif command == "quit":
            return
        print(orjson.dumps({"seconds": time.perf_counter() - t0, "text": text}).decode(), flush=True)


if __name__ == "__main__":
    worker(sys.argv[1], orjson.loads(sys.argv[2]), sys.argv[3])
