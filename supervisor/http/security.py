"""Access control and browser hardening: API key, CORS, security headers.

- With an API key set, every route but ``/health``, ``/ready`` (probes), ``/`` and ``/static/`` needs
  ``Authorization: Bearer <key>``, compared in constant time.
- CORS headers are sent only for origins named with ``--cors-origin``.
- Every response carries headers that keep the page from being framed or sniffed, and a CSP
  that allows no inline script and nothing from other hosts (the service often runs offline).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from supervisor.http.errors import ClientError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = ("/health", "/ready", "/")
PUBLIC_PREFIXES = ("/static/",)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_CORS_METHODS = "GET, POST, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, X-Request-ID"


def is_public(request: web.Request) -> bool:
    return request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES)


def auth_middleware(api_key: str | None):  # type: ignore[no-untyped-def]
    expected = f"Bearer {api_key}".encode() if api_key else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and not is_public(request) and request.method != "OPTIONS":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise ClientError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return await handler(request)

    return middleware


def headers_middleware(cors_origins: list[str]):  # type: ignore[no-untyped-def]
    allowed = set(cors_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        cors = origin is not None and (origin in allowed or "*" in allowed)
        if cors and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if cors:
            response.headers["Access-Control-Allow-Origin"] = origin  # type: ignore[assignment]
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
            response.headers.add("Vary", "Origin")
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return middleware
