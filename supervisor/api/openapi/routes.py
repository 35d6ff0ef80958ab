"""``GET /openapi.json`` (OpenAPI 3.1, written once in ``openapi.json`` beside this module; the
tests hold the routes to it) and ``GET /docs``: Swagger UI from the vendored ``docs_ui/`` files,
no CDN, and no inline script, so it runs under the service's Content-Security-Policy."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

SPEC = Path(__file__).parent / "openapi.json"
DOCS_DIR = Path(__file__).parent / "docs_ui"


@cache
def spec_bytes() -> bytes:
    return SPEC.read_bytes()


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=spec_bytes(), content_type="application/json")


async def docs(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DOCS_DIR / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def docs_file(request: web.Request) -> web.StreamResponse:
    """A file of ``docs_ui/``; a missing one is a JSON 404 like every other error."""
    path = (DOCS_DIR / request.match_info["file"]).resolve()
    if path.parent != DOCS_DIR.resolve() or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_get("/docs/{file}", docs_file)
