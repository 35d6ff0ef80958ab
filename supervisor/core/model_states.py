"""A model's states, the transitions allowed between them, and the errors its owner answers with.

``supervisor.core.lifecycle`` is the only code that changes a state, through this table; routes map
the errors to HTTP answers (``QueueFull`` 503, ``ModelFailed`` 503 naming the way out, ...).
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    CACHED = "cached"
    RESTORING = "restoring"
    RESIDENT = "resident"
    OFFLOADING = "offloading"
    RELEASING = "releasing"
    FAILED = "failed"  # loads kept failing: requests get 503 until a release or a restart


ALLOWED: dict[State, set[State]] = {
    State.UNLOADED: {State.LOADING, State.RELEASING},
    State.LOADING: {State.RESIDENT, State.UNLOADED, State.FAILED},
    State.RESIDENT: {State.OFFLOADING, State.CACHED, State.RELEASING},
    State.OFFLOADING: {State.CACHED},
    State.CACHED: {State.RESTORING, State.LOADING, State.RELEASING},
    State.RESTORING: {State.RESIDENT, State.CACHED},
    State.RELEASING: {State.UNLOADED},
    State.FAILED: {State.RELEASING},
}


class InvalidTransition(RuntimeError):
    pass


class QueueFull(RuntimeError):
    """More requests are waiting than the queue holds."""


class RequestTimeout(RuntimeError):
    """An inference outlived the request timeout; its engine was killed."""


class ModelFailed(RuntimeError):
    """The model is ``failed``: its loads kept failing; a release (or a restart) clears it."""


class ServiceClosing(RuntimeError):
    """The service is shutting down and takes no more work."""


class OwnerError(RuntimeError):
    """The model's owner failed in a way it did not expect; it goes on (see the log)."""


def path_to(start: State, target: State) -> list[State]:
    """The shortest chain of allowed changes from ``start`` to ``target`` (empty if none or equal)."""
    paths: dict[State, list[State]] = {start: []}
    frontier = [start]
    while frontier and target not in paths:
        state = frontier.pop(0)
        for nxt in sorted(ALLOWED[state], key=lambda s: s.value):
            if nxt not in paths:
                paths[nxt] = [*paths[state], nxt]
                frontier.append(nxt)
    return paths.get(target, [])
