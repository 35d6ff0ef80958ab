"""ENOSPC in an engine (converting weights into a full cache disk) crosses the pipe as a 507."""

from __future__ import annotations

import errno

from engine.errors import to_wire_error
from ipc.errors import NO_SPACE_MESSAGE, EngineFailure, WeightsUnavailable
from ipc.protocol import WireError
from supervisor.http.errors import http_status


def test_a_full_disk_is_507_naming_the_setting_and_never_the_path() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/root/.cache/dsocr/ppocr.safetensors.tmp")
    try:
        try:
            raise full
        except OSError as exc:
            raise WeightsUnavailable(f"cannot write {exc.filename}") from exc
    except WeightsUnavailable as wrapped:
        wire = to_wire_error(wrapped)
    assert wire == WireError(WireError.NO_SPACE, NO_SPACE_MESSAGE)
    status, message, _ = http_status(EngineFailure(wire))
    assert status == 507 and "DSOCR_CACHE_DIR" in message and "/root" not in message
    assert http_status(full)[:2] == (507, NO_SPACE_MESSAGE)  # the same in the supervisor itself
    assert to_wire_error(OSError(errno.EACCES, "denied")).type == WireError.MODEL_ERROR


def test_a_full_disk_said_in_words_by_a_library_is_507_too() -> None:
    class SafetensorError(Exception):  # safetensors' own type, raised from Rust with the OS's words
        pass

    err = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert to_wire_error(err) == WireError(WireError.NO_SPACE, NO_SPACE_MESSAGE)
