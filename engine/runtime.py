"""The engine's core: models, their segments and placements, with no I/O.

``EngineRuntime`` runs in the engine process behind the pipe loop (``engine.main``) and, in unit
tests and benchmarks, in-process. Each method is one transition or one inference and returns a
plain dict that becomes a reply's ``result``; errors are raised as the exceptions in
``engine.models.base`` or ``engine.placement`` and mapped to wire errors by the caller.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import placement
from engine.images import decode_image
from engine.models import create_adapter
from engine.models.base import BadInput, ModelAdapter, PartialCallback, Unsupported
from ipc.cache import cache_root
from ipc.errors import NotLoaded
from ipc.weights import StoreError, WeightStore, unlink_segment

log = logging.getLogger("dsocr.engine")


@dataclass
class LoadedModel:
    """One model in this engine: its adapter and segment, and (when resident) module + placement."""

    adapter: ModelAdapter
    store: WeightStore
    device: torch.device
    module: torch.nn.Module | None = None
    placement: placement.Placement | None = None
    # weak references to the bound tensors, to prove an offload left nothing alive
    bound: list[weakref.ref] = field(default_factory=list)

    @property
    def resident(self) -> bool:
        return self.module is not None


class EngineRuntime:
    def __init__(self) -> None:
        self.models: dict[str, LoadedModel] = {}
        self.busy_since: float | None = None

    # -- transitions ----------------------------------------------------------------------

    def load(self, model: str, segment: str, device: str, options: dict[str, Any]) -> dict[str, Any]:
        """unloaded -> resident: weights from the adapter's files into a new segment, then bind."""
        t0 = time.perf_counter()
        placement.resolve_device(device)  # a device we cannot use fails before any work
        adapter = create_adapter(model, options)
        files = adapter.weight_files()
        t_files = time.perf_counter()
        try:
            created = WeightStore.from_safetensors(segment, files)
        except StoreError as exc:
            files = self._rebuild_cached(adapter, files, exc)
            created = WeightStore.from_safetensors(segment, files)
        created.close()  # the engine maps segments read-only, like a restore would
        t_store = time.perf_counter()
        try:
            result = self._bind(model, adapter, segment, device)
        except BaseException:
            self._forget(model)
            unlink_segment(segment)  # a load that failed leaves nothing behind
            raise
        result.update(
            files=[str(f) for f in files],
            prepare_s=t_files - t0,
            store_s=t_store - t_files,
            seconds=time.perf_counter() - t0,
        )
        return result

    def _rebuild_cached(self, adapter: ModelAdapter, files: list, exc: Exception) -> list:
        """A converted file in our cache that cannot be read (truncated, corrupt): remove it and
        convert again, once. A file outside the cache is the user's: its error stands."""
        root = cache_root(adapter.options).resolve()
        cached = [f for f in files if root in Path(f).resolve().parents]
        if not cached:
            raise exc
        for path in cached:
            log.warning("cached %s is unreadable (%s); converting it again", path, exc)
            Path(path).unlink(missing_ok=True)
        return adapter.weight_files()

    def restore(self, model: str, segment: str, device: str, options: dict[str, Any]) -> dict[str, Any]:
        """cached -> resident: bind from the existing segment; the checkpoint is not read."""
        t0 = time.perf_counter()
        loaded = self.models.get(model)
        if loaded is not None and loaded.resident:
            return self._describe(model) | {"seconds": 0.0}
        adapter = loaded.adapter if loaded else create_adapter(model, options)
        result = self._bind(model, adapter, segment, device)
        result["seconds"] = time.perf_counter() - t0
        return result

    def _bind(self, model: str, adapter: ModelAdapter, segment: str, device_spec: str) -> dict[str, Any]:
        device = placement.resolve_device(device_spec)
        loaded = self.models.get(model)
        if loaded is None or loaded.store.name != segment:
            loaded = LoadedModel(adapter, WeightStore.attach(segment), device)
            self.models[model] = loaded
        loaded.device = device
        # "pin": False measures the staged copy that cudaHostRegister avoids (bench/gpu.py)
        placed = placement.place(loaded.store, device, pin=bool(adapter.options.get("pin", True)))
        placement.cast_floating(placed, adapter.dtype_for(device))
        module = adapter.build_skeleton()
        # strict: a tensor missing from the segment would stay on `meta` and fail later, obscurely
        module.load_state_dict(placed.tensors, strict=True, assign=True)
        module.requires_grad_(False)
        adapter.after_bind(module, device)
        leftover = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
        if leftover:
            raise RuntimeError(f"{model}: tensors not bound from the segment: {leftover[:5]}")
        loaded.module, loaded.placement = module, placed
        loaded.bound = [weakref.ref(t) for t in module.parameters()]
        return self._describe(model)

    def offload(self, model: str) -> dict[str, Any]:
        """resident -> cached: drop module and device memory; nothing is copied back."""
        t0 = time.perf_counter()
        loaded = self.models.get(model)
        if loaded is None:
            raise NotLoaded(f"model {model} is not loaded in this engine")
        if loaded.placement is not None:
            self._drop(loaded)
        return self._describe(model) | {"seconds": time.perf_counter() - t0}

    def _drop(self, loaded: LoadedModel) -> None:
        placed, loaded.module, loaded.placement = loaded.placement, None, None
        if placed is not None:
            placement.drop(placed)
        # a full collection costs ~0.1-0.5 s with torch and transformers loaded: only when a
        # reference cycle really keeps a bound tensor alive
        if any(ref() is not None for ref in loaded.bound):
            gc.collect()
            if placed is not None:
                placement.drop(placed)

    def alive_tensors(self, model: str) -> int:
        """How many of the model's bound parameters are still referenced by anything."""
        loaded = self.models.get(model)
        return 0 if loaded is None else sum(ref() is not None for ref in loaded.bound)

    # -- inference ------------------------------------------------------------------------

    def infer(self, model: str, image: bytes, options: dict[str, Any]) -> dict[str, Any]:
        """One image, through the same path as a batch: its result, or its failure raised."""
        (answer,) = self.infer_batch(model, [image], [options])
        if isinstance(answer, Exception):
            raise answer
        return answer

    def infer_batch(
        self, model: str, images: list[bytes], options: list[dict[str, Any]],
        on_partial: PartialCallback | None = None,
    ) -> list[dict[str, Any] | Exception]:  # fmt: skip
        """Several requests in one go: item ``i`` is image ``i``'s result or the exception that
        failed it alone (an undecodable image fails its own request, not the batch)."""
        loaded = self.models.get(model)
        if loaded is None or not loaded.resident:
            raise NotLoaded(f"model {model} is not resident in this engine")
        t0 = time.perf_counter()
        results: list[dict[str, Any] | Exception | None] = [None] * len(images)
        arrays, opts, where = [], [], []
        for i, (image, option) in enumerate(zip(images, options)):
            try:
                arrays.append(decode_image(image))
            except Exception as exc:
                results[i] = exc
                continue
            opts.append(option)
            where.append(i)
        t_decode = time.perf_counter()

        def partial(index: int, text: str) -> None:
            if on_partial is not None:
                on_partial(where[index], text)

        self.busy_since = t0
        try:
            with torch.inference_mode():
                answers = loaded.adapter.infer_batch(loaded.module, arrays, opts, loaded.device, partial)
        finally:
            self.busy_since = None
        t_end = time.perf_counter()
        memory = placement.device_memory(loaded.device)
        for index, array, answer in zip(where, arrays, answers):
            if isinstance(answer, dict):
                h, w = array.shape[:2]
                answer.setdefault("image_dims", {"w": w, "h": h})
                answer["timing"] = {"decode_s": t_decode - t0, "infer_s": t_end - t_decode, "batch": len(arrays)}
                answer["device_memory"] = memory
            results[index] = answer
        return results  # type: ignore[return-value]

    def batch_limit(self, model: str) -> int:
        loaded = self.models.get(model)
        return 1 if loaded is None else max(1, loaded.adapter.batch_limit(loaded.device))

    # -- introspection --------------------------------------------------------------------

    def _describe(self, model: str) -> dict[str, Any]:
        loaded = self.models[model]
        return {
            "model": model,
            "state": "resident" if loaded.resident else "cached",
            "device": str(loaded.device),
            "shared_memory_bytes": loaded.store.size,
            "weights_bytes": loaded.store.data_bytes,
            "device_bytes": loaded.placement.device_bytes if loaded.placement else 0,
            "pinned": bool(loaded.placement and loaded.placement.pinned),
            "prompt_types": list(loaded.adapter.prompt_types),
            "batch_limit": loaded.adapter.batch_limit(loaded.device),
            "device_memory": placement.device_memory(loaded.device),
        }

    def stats(self) -> dict[str, Any]:
        devices = {m.device for m in self.models.values()}
        memory = {str(d): placement.device_memory(d) for d in devices if d.type == "cuda"}
        return {
            "pid": os.getpid(),
            "models": {name: self._describe(name) for name in self.models},
            "device_memory": memory,
            "busy_s": None if self.busy_since is None else time.perf_counter() - self.busy_since,
        }

    def _forget(self, model: str) -> None:
        """Drop the model and unmap its segment (the segment itself stays)."""
        loaded = self.models.pop(model, None)
        if loaded is None:
            return
        self._drop(loaded)
        if loaded.device.type == "cuda":
            placement.unpin(loaded.store)
        try:
            loaded.store.close()
        except BufferError:
            log.warning("segment %s still has views alive at close", loaded.store.name)

    def close(self) -> None:
        """Drop every model and unmap every segment (the segments themselves stay)."""
        for name in list(self.models):
            self._forget(name)


__all__ = ["BadInput", "EngineRuntime", "NotLoaded", "Unsupported"]
