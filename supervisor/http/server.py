"""Running the app: our own runner, so that the connection layer is bounded and speaks JSON.

aiohttp's ``run_app`` would do, but for what it does not let us set:
- a cap on open connections, so descriptors never run out (at 1,024 of them asyncio logged a
  traceback per failed accept): at the cap, a new connection takes the place of the oldest idle
  one (nginx reuses keep-alive connections the same way), so a crowd of idle sockets cannot lock
  out ``/health``; only when every connection is busy is the new one answered 503 and closed;
- parser-level errors (a malformed request line, ``GET *``, bad headers) answered as JSON with an
  ``X-Request-ID`` and the security headers, logged in one line, not as a traceback;
- no ``Server: Python/3.x aiohttp/3.y`` version banner;
- a header timeout: aiohttp's keep-alive timer also closes a connection that has not sent a
  whole request (slowloris) — ``--header-timeout`` sets it.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
import uuid
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from supervisor.core.settings import Settings
from supervisor.http.security import SECURITY_HEADERS

log = logging.getLogger("dsocr.supervisor")

SERVER_NAME = "dsocr"
_FD_RESERVE = 64  # descriptors kept for engines, shared memory, logs and the listening socket
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nServer: dsocr\r\nContent-Length: 76\r\n\r\n"
    b'{"success": false, "error": "too many open connections; retry in a moment"}\n'
)
assert len(_REFUSED.split(b"\r\n\r\n", 1)[1]) == 76


def error_response(status: int, message: str, request_id: str | None = None) -> web.Response:
    request_id = request_id or uuid.uuid4().hex[:16]
    body = {"success": False, "error": message, "request_id": request_id}
    response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
    response.headers["X-Request-ID"] = request_id
    response.headers["Server"] = SERVER_NAME
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class _Handler(RequestHandler):
    """One connection: refused when over the cap; parser errors answered as JSON."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        full = isinstance(manager, _CappedServer) and len(manager.connections) >= manager.max_connections
        if full and not manager.evict_idle():  # type: ignore[union-attr]
            self._manager = None  # never registered: connection_lost has nothing to undo
            manager.refuse(transport)  # type: ignore[union-attr]
            return
        super().connection_made(transport)

    @property
    def idle(self) -> bool:
        """Waiting for a request (none in progress): safe to close."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        text = message if status < 500 and message else ("bad request" if status < 500 else "internal error")
        if status >= 500:
            log.error("error handling a request from %s: %s", request.remote, exc, exc_info=exc)
        else:
            log.info("refused a malformed request from %s: %d %s", request.remote, status, text)
        response = error_response(status, f"malformed request: {text}"[:300])
        response.force_close()
        return response


class _CappedServer(Server):
    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.refused = 0
        self.evicted = 0
        self._last_warning = 0.0

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)

    def evict_idle(self) -> bool:
        """Close the oldest connection that waits for a request; False when all are busy."""
        for handler in self.connections:  # in the order they came
            if isinstance(handler, _Handler) and handler.idle:
                self.evicted += 1
                handler.force_close()
                transport = self._connections.pop(handler, None)
                if transport is not None:
                    transport.close()
                return True
        return False

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_warning >= 10:  # one line per 10 s, however many are refused
            self._last_warning = now
            log.warning("refusing connections over the cap of %d (%d so far)", self.max_connections, self.refused)
        try:
            transport.write(_REFUSED)  # type: ignore[attr-defined]
        finally:
            transport.close()


class Runner(web.AppRunner):
    def __init__(self, app: web.Application, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections

    async def _make_server(self) -> Server:
        loop = asyncio.get_running_loop()
        app = self.app
        app._set_loop(loop)
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        kwargs = {**self._kwargs, "debug": False}
        return _CappedServer(
            app._handle, request_factory=app._make_request, loop=loop, max_connections=self.max_connections, **kwargs
        )


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to what the descriptor limit allows (raised to its hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - _FD_RESERVE))


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Out of descriptors, asyncio logs a traceback per failed accept: one line per 10 s instead."""
    last = [0.0]
    default = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            now = time.monotonic()
            if now - last[0] >= 10:
                last[0] = now
                log.warning("accept() failed: %s (further failures in the next 10 s are not logged)", exc)
            return
        if default is not None:
            default(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def serve(
    app: web.Application, settings: Settings, shutdown_timeout: float = 30.0, access_log_class: Any = None
) -> None:
    """Listen, log that it does, serve until SIGTERM/SIGINT, drain, then shut down gracefully.

    The first SIGTERM starts the drain: ``/ready`` answers 503 for ``--drain-seconds`` while
    everything else is served as usual; a second signal (or SIGINT) ends the drain at once.
    """
    from supervisor.core.service import SERVICE

    loop = asyncio.get_running_loop()
    _quiet_accept_errors(loop)
    stop = asyncio.Event()
    signals: asyncio.Queue[int] = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)

    async def drain() -> None:
        first = await signals.get()
        service = app[SERVICE]
        service.draining = True
        if first == signal.SIGTERM and settings.drain_seconds > 0:
            log.info("SIGTERM: /ready answers 503; still serving for %gs", settings.drain_seconds)
            try:
                await asyncio.wait_for(signals.get(), settings.drain_seconds)
                log.info("second signal: shutting down now")
            except asyncio.TimeoutError:
                pass
        stop.set()

    drainer = asyncio.create_task(drain())
    cap = connection_cap(settings.max_connections)
    runner = Runner(
        app,
        max_connections=cap,
        handle_signals=False,
        access_log_format='%a "%r" %s %b %Tfs',
        **({"access_log_class": access_log_class} if access_log_class else {}),
        keepalive_timeout=settings.header_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=min(cap, 1024))
        await site.start()
        log.info("listening on http://%s:%d (at most %d connections)", settings.host, settings.port, cap)
        await stop.wait()
        log.info("shutting down: finishing requests in flight (up to %.0fs)", shutdown_timeout)
    finally:
        drainer.cancel()
        await runner.cleanup()


def run(app: web.Application, settings: Settings, access_log_class: Any = None) -> None:
    asyncio.run(serve(app, settings, access_log_class=access_log_class))
