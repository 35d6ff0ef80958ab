"""Device placement: the only module that touches CUDA.

The weights live in a shared-memory segment (``ipc.weights.WeightStore``). Placing them on a device
turns the segment into tensors:

- CPU: every tensor is a zero-copy view of the segment (read-only mapping: nothing is copied,
  many engines can share one copy).
- CUDA: the segment's data region is pinned once per process (``cudaHostRegister``), one device
  buffer of its size is allocated, the whole region is copied in one transfer, and every tensor is
  a view into that buffer. Dropping the placement frees the buffer; nothing is copied back because
  weights never change during inference.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch

from ipc.weights import TensorEntry, WeightStore

log = logging.getLogger("dsocr.engine.placement")

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip

_CUDA_HOST_REGISTER_READ_ONLY = 8  # cudaHostRegisterReadOnly: the engine maps segments read-only
_STAGING_BYTES = 64 << 20
_pinned: dict[str, int] = {}  # segment name -> registered host address, in this process


class PlacementError(RuntimeError):
    """The device cannot be used or cannot hold the model."""


def resolve_device(spec: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device this process can use."""
    if spec == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PlacementError(f"device {spec} asked for, but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", 0)
        if device.index >= torch.cuda.device_count():
            raise PlacementError(f"device {spec}: only {torch.cuda.device_count()} CUDA devices visible")
    elif device.type != "cpu":
        raise PlacementError(f"unsupported device {spec}")
    return device


@dataclass
class Placement:
    """The tensors of one model on one device, and the single device buffer they view (CUDA)."""

    device: torch.device
    tensors: dict[str, torch.Tensor]
    device_buffer: torch.Tensor | None
    pinned: bool  # CUDA only: copied from registered (pinned) memory rather than staged

    @property
    def device_bytes(self) -> int:
        return 0 if self.device_buffer is None else self.device_buffer.numel()


def host_bytes(store: WeightStore) -> torch.Tensor:
    """The segment's data region as a flat uint8 tensor, without a copy."""
    with warnings.catch_warnings():
        # read-only mapping: torch warns that writes are undefined; we never write weights
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(store.data_view(), dtype=torch.uint8)


def _views(flat: torch.Tensor, entries: list[TensorEntry]) -> dict[str, torch.Tensor]:
    out = {}
    for e in entries:
        raw = flat[e.offset : e.offset + e.nbytes]
        out[e.name] = raw.view(TORCH_DTYPES[e.dtype]).view(e.shape)
    return out


def place(store: WeightStore, device: torch.device, pin: bool = True) -> Placement:
    """Tensors for every entry of ``store`` on ``device`` (see module doc for how)."""
    host = host_bytes(store)
    if device.type == "cpu":
        return Placement(device, _views(host, store.entries), None, pinned=False)
    try:
        buffer = torch.empty(store.data_bytes, dtype=torch.uint8, device=device)
    except torch.OutOfMemoryError as exc:
        raise PlacementError(f"{device} cannot hold {store.data_bytes / 2**30:.2f} GiB: {exc}") from None
    pinned = pin and _pin(store, host)
    if pinned:
        buffer.copy_(host, non_blocking=True)
    else:
        _staged_copy(host, buffer)
    torch.cuda.synchronize(device)
    return Placement(device, _views(buffer, store.entries), buffer, pinned=pinned)


def _pin(store: WeightStore, host: torch.Tensor) -> bool:
    """Register the segment's pages with CUDA once per process; False if the driver refuses."""
    if store.name in _pinned:
        return True
    cudart = torch.cuda.cudart()
    for flags in (_CUDA_HOST_REGISTER_READ_ONLY, 0):
        err = cudart.cudaHostRegister(host.data_ptr(), host.numel(), flags)
        if int(err) == 0:
            _pinned[store.name] = host.data_ptr()
            return True
    log.warning("cudaHostRegister refused segment %s; using a staged copy", store.name)
    return False


def unpin(store: WeightStore) -> None:
    """Undo :func:`_pin` (before unmapping the segment)."""
    address = _pinned.pop(store.name, None)
    if address is not None:
        torch.cuda.cudart().cudaHostUnregister(address)


def _staged_copy(host: torch.Tensor, buffer: torch.Tensor) -> None:
    """Copy through two small pinned buffers when the segment itself cannot be pinned."""
    stages = [torch.empty(_STAGING_BYTES, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    done = [torch.cuda.Event() for _ in range(2)]
    for i, start in enumerate(range(0, host.numel(), _STAGING_BYTES)):
        n = min(_STAGING_BYTES, host.numel() - start)
        stage, event = stages[i % 2], done[i % 2]
        event.synchronize()  # the transfer that last used this stage has finished
        stage[:n].copy_(host[start : start + n])
        buffer[start : start + n].copy_(stage[:n], non_blocking=True)
        event.record()


def cast_floating(placement: Placement, dtype: torch.dtype | None) -> None:
    """Convert floating tensors to ``dtype`` (copies; used when stored and run dtypes differ)."""
    if dtype is None:
        return
    for name, t in placement.tensors.items():
        if t.is_floating_point() and t.dtype != dtype:
            placement.tensors[name] = t.to(dtype)


def drop(placement: Placement) -> None:
    """Forget the placement's tensors and give device memory back to the driver.

    The caller must have dropped every other reference (the module) first.
    """
    device = placement.device
    placement.tensors.clear()
    placement.device_buffer = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def cuda_initialized() -> bool:
    """Whether this process has a CUDA context (a zygote must never have one: see engine/zygote.py)."""
    return torch.cuda.is_initialized()


def device_memory(device: torch.device | None) -> dict[str, int]:
    """Bytes allocated and reserved by this process's allocator on ``device`` (0 on CPU)."""
    if device is None or device.type != "cuda" or not torch.cuda.is_initialized():
        return {"allocated": 0, "reserved": 0}
    return {
        "allocated": torch.cuda.memory_allocated(device),
        "reserved": torch.cuda.memory_reserved(device),
    }


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)
