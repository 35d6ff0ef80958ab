"""Exceptions -> HTTP answers: one table, used by the error middleware."""

from __future__ import annotations

import errno

from ipc.errors import NO_SPACE_MESSAGE, EngineDead, EngineFailure
from supervisor.core.lifecycle import ModelFailed, QueueFull, RequestTimeout, ServiceClosing


class ClientError(Exception):
    """A request we refuse before it reaches the engine (bad form, too large, unknown model)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyBudgetFull(Exception):
    """The request bodies in flight leave no room for this one (503, Retry-After): ``body_budget``."""


# WireError types from the engine -> HTTP status
_ENGINE_STATUS = {
    "bad_input": 400,
    "unsupported": 400,
    "weights_unavailable": 503,
    "out_of_memory": 507,
    "no_space": 507,
    "not_loaded": 503,
    "model_error": 500,
    "protocol": 500,
}

RETRY_AFTER_S = 1
# nginx's status for "the client closed the connection before the answer": it is counted and
# logged apart from the 5xx, and never sent (nobody is there to read it)
CLIENT_GONE = 499


def http_status(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """(status, message, extra headers) for a known exception; 500 for anything else."""
    if isinstance(exc, ClientError):
        return exc.status, exc.message, {}
    if isinstance(exc, (QueueFull, BodyBudgetFull)):
        return 503, f"server busy: {exc}; retry later", {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(exc, ModelFailed):
        return 503, str(exc), {}
    if isinstance(exc, ServiceClosing):
        return 503, str(exc), {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(exc, RequestTimeout):
        return 504, str(exc), {}
    if isinstance(exc, EngineDead):
        return 502, f"the OCR engine stopped while serving this request ({exc}); it restarts on the next one", {}
    if isinstance(exc, EngineFailure):
        return _ENGINE_STATUS.get(exc.type, 500), exc.message, {}
    if isinstance(exc, ConnectionResetError):  # aiohttp's ClientConnectionResetError is one too
        return CLIENT_GONE, "the client closed the connection before the answer", {}
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return 507, NO_SPACE_MESSAGE, {}  # the message names the setting, never the server's paths
    return 500, "internal error", {}
