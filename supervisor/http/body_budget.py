"""Admission by bytes: request bodies in flight share one budget, reserved before a byte is read.

Each request that has a body reserves its Content-Length (or, chunked, the most any route reads)
when its headers are in, and gives it back when the request ends, however it ends. A request the
budget cannot cover is answered 503 with Retry-After at once: the upload is never buffered (aiohttp
only discards what the client still sends), so the supervisor's memory is bounded by the budget,
not by connections x upload size (issue 20: 60 uploads of 20 MB took it to 1.49 GB).

One request is always admitted when nothing else is in flight, so a budget smaller than the
largest legal body slows such bodies down to one at a time instead of refusing them forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, web

from supervisor.core.service import SETTINGS
from supervisor.core.settings import Settings
from supervisor.http.errors import RETRY_AFTER_S, BodyBudgetFull
from supervisor.http.json_body import body_limit
from supervisor.http.server import error_response


class BodyBudget:
    """Bytes of request bodies admitted and not yet finished; the event loop is its only user."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.in_flight = 0
        self.refused = 0

    def reserve(self, nbytes: int) -> bool:
        if self.in_flight and self.in_flight + nbytes > self.limit_bytes:
            self.refused += 1
            return False
        self.in_flight += nbytes
        return True

    def release(self, nbytes: int) -> None:
        self.in_flight -= nbytes

    def full_for(self, nbytes: int) -> bool:
        return bool(self.in_flight) and self.in_flight + nbytes > self.limit_bytes

    def refusal(self) -> str:
        return f"{self.in_flight} bytes of uploads in flight, the budget is {self.limit_bytes} (--upload-budget-mb)"


BODY_BUDGET = web.AppKey("body_budget", BodyBudget)


def reservation(request: web.Request, settings: Settings) -> int:
    """The bytes this request's body may take: its length, capped at the largest body any route
    reads (a longer one gets its 413 without being read); that cap when it is chunked."""
    if not request.body_exists:
        return 0
    most = body_limit(settings)
    length = request.content_length
    return most if length is None else min(length, most)


def body_budget_middleware(budget: BodyBudget, settings: Settings):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        nbytes = reservation(request, settings)
        if not nbytes:
            return await handler(request)
        if not budget.reserve(nbytes):
            raise BodyBudgetFull(budget.refusal())
        try:
            return await handler(request)
        finally:  # also on a disconnect, a timeout or a cancellation
            budget.release(nbytes)

    return middleware


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` on a route that reads uploads: aiohttp answers it before any
    middleware runs, so the budget is asked here first and a full server answers 503 instead of
    "send it" (curl sends the header for bodies over 1 MB). The middleware still reserves."""
    if request.version != HttpVersion11 or request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers.get('Expect', '')}")
    budget = request.app[BODY_BUDGET]
    if budget.full_for(reservation(request, request.app[SETTINGS])):
        budget.refused += 1
        response = error_response(503, f"server busy: {budget.refusal()}; retry later")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        response.force_close()  # the client sends no body after a final answer: nothing to read
        return response
    assert request.transport is not None
    request.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # as aiohttp's docs write it
    return None
