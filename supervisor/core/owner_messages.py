"""What callers hand a model's owner: inference requests and control commands, each with the
future its caller awaits, and how a future is settled when that caller may have left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PartialHandler = Callable[[str], None]


@dataclass(eq=False)
class Request:
    image: bytes
    options: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    on_partial: PartialHandler | None = None
    keep_alive: float | None = None
    queued: float = 0.0


@dataclass(eq=False)
class Control:
    name: str  # "load" | "offload" | "stop" | "release"
    reason: str
    future: asyncio.Future[Any]


def settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Resolve ``future`` unless its caller went away; an exception nobody awaits is not logged."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        with contextlib.suppress(BaseException):
            future.exception()  # marks it retrieved: a caller that left must not cause a warning
    else:
        future.set_result(outcome)
