"""Engine exceptions -> wire errors, so every failure crosses the pipe with a stable type."""

from __future__ import annotations

from engine import placement
from ipc.errors import EngineError
from ipc.protocol import WireError
from ipc.weights import OutOfSharedMemory, StoreError


def to_wire_error(exc: BaseException) -> WireError:
    if isinstance(exc, EngineError):
        return WireError(exc.wire, str(exc))
    if isinstance(exc, OutOfSharedMemory) or placement.is_out_of_memory(exc):
        return WireError(WireError.OUT_OF_MEMORY, str(exc))
    if isinstance(exc, (StoreError, placement.PlacementError)):
        return WireError(WireError.MODEL_ERROR, str(exc))
    return WireError(WireError.MODEL_ERROR, f"{type(exc).__name__}: {exc}")
