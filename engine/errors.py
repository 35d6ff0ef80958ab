"""Engine exceptions -> wire errors, so every failure crosses the pipe with a stable type."""

from __future__ import annotations

import errno
import os

from engine import placement
from ipc.errors import NO_SPACE_MESSAGE, EngineError
from ipc.protocol import WireError
from ipc.weights import OutOfSharedMemory, StoreError


def to_wire_error(exc: BaseException) -> WireError:
    if isinstance(exc, OutOfSharedMemory):  # ENOSPC of /dev/shm: its own answer names shm_size
        return WireError(WireError.OUT_OF_MEMORY, str(exc))
    if _disk_full(exc):  # before the rest: a WeightsUnavailable may wrap it, and its text has paths
        return WireError(WireError.NO_SPACE, NO_SPACE_MESSAGE)
    if isinstance(exc, EngineError):
        return WireError(exc.wire, str(exc))
    if isinstance(exc, OutOfSharedMemory) or placement.is_out_of_memory(exc):
        return WireError(WireError.OUT_OF_MEMORY, str(exc))
    if isinstance(exc, (StoreError, placement.PlacementError)):
        return WireError(WireError.MODEL_ERROR, str(exc))
    return WireError(WireError.MODEL_ERROR, f"{type(exc).__name__}: {exc}")


# how libraries that do their own I/O say ENOSPC without an OSError: safetensors (Rust) raises
# "SafetensorError: Error while serializing: I/O error: No space left on device (os error 28)"
_NO_SPACE_TEXT = (os.strerror(errno.ENOSPC), f"(os error {errno.ENOSPC})")


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC in ``exc`` or what caused it (a converter that wraps the OSError keeps it as cause)."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if any(text in str(exc) for text in _NO_SPACE_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
