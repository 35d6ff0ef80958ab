"""Errors that cross the pipe, by wire name, and the two the supervisor raises about an engine.

The engine raises the exception classes here (through ``engine.models.base``) and maps anything
else to ``model_error``; the supervisor maps wire names to HTTP statuses (``supervisor.http.errors``).
One module on both sides, so a name cannot mean one thing in one process and another in the other.
"""

from __future__ import annotations

from typing import Any

from ipc.protocol import WireError

# a full disk, in the engine (converting weights into the cache) or in the supervisor: 507. The
# answer names the setting to change, never a path (the server's home directory is nobody's business)
NO_SPACE_MESSAGE = (
    "no space left on the disk: free some, or point the cache dir elsewhere with $DSOCR_CACHE_DIR "
    "(or --model-option MODEL.cache_dir=DIR)"
)


class EngineError(Exception):
    """Base of the errors an engine reports; ``wire`` is the name that crosses the pipe."""

    wire = WireError.MODEL_ERROR


class BadInput(EngineError, ValueError):
    """The request is wrong (unsupported prompt type, undecodable image...): the client's fault."""

    wire = WireError.BAD_INPUT


class Unsupported(BadInput):
    """The request asks for something this model cannot do (a prompt type of another model)."""

    wire = WireError.UNSUPPORTED


class UnknownModel(BadInput):
    """A model name no adapter answers to."""


class WeightsUnavailable(EngineError, RuntimeError):
    """The weights for the first load cannot be found or made; the message says where we looked."""

    wire = WireError.WEIGHTS_UNAVAILABLE


class NotLoaded(EngineError, RuntimeError):
    """An inference or offload for a model that is not resident in this engine."""

    wire = WireError.NOT_LOADED


class EngineDead(RuntimeError):
    """The engine process exited (or was killed) before answering."""

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode


class EngineFailure(RuntimeError):
    """The engine answered a request with an error; ``type`` is a ``WireError`` type."""

    def __init__(self, error: WireError) -> None:
        super().__init__(error.message)
        self.type = error.type
        self.message = error.message

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> EngineFailure:
        return cls(WireError.from_dict(data))


def item_outcome(results: list[Any], index: int) -> dict[str, Any] | EngineFailure:
    """Item ``index`` of an ``Infer`` reply's ``results``: its result, or the failure of that image alone."""
    item = results[index] if 0 <= index < len(results) else {"error": {"type": "protocol", "message": "no result"}}
    return EngineFailure.from_dict(item["error"]) if "error" in item else item


def only_result(reply: dict[str, Any]) -> dict[str, Any]:
    """The result of a one-image ``Infer`` (``Infer.one``); its failure raised as :class:`EngineFailure`."""
    outcome = item_outcome(reply.get("results", []), 0)
    if isinstance(outcome, EngineFailure):
        raise outcome
    return outcome
