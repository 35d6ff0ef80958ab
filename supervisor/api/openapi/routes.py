"""``GET /openapi.json`` (OpenAPI 3.1, written once in ``openapi.json`` beside this module; the
tests hold the routes to it) and ``GET /docs``: Swagger UI from the vendored ``docs_ui/`` files,
no CDN, and no inline script, so it runs under the service's Content-Security-Policy.

The file's ``model`` and ``prompt_type`` form fields are filled in as served: their choices are the
served models and their prompt types (from ``ipc/catalog.py``), the default the first model and
``ocr``, so Swagger's "Try it out" succeeds with only a file chosen."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import orjson
from aiohttp import web

from ipc.catalog import MODELS
from supervisor.core.service import SETTINGS

SPEC = Path(__file__).parent / "openapi.json"
DOCS_DIR = Path(__file__).parent / "docs_ui"


@cache
def spec_bytes() -> bytes:
    return SPEC.read_bytes()


FORM_ROUTES = ("/ocr", "/ocr-pdf", "/ocr/stream")


def served_spec(models: Sequence[str]) -> dict:
    """The spec with the form fields' choices and defaults for the served ``models``."""
    spec = orjson.loads(spec_bytes())
    types = list(dict.fromkeys(t for m in models for t in MODELS[m].prompt_types))
    for path in FORM_ROUTES:
        fields = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        fields["properties"]["model"].update(enum=list(models), default=models[0])
        fields["properties"]["prompt_type"].update(enum=types, default="ocr" if "ocr" in types else types[0])
    return spec


@cache
def served_spec_bytes(models: tuple[str, ...]) -> bytes:
    return orjson.dumps(served_spec(models))


async def openapi_json(request: web.Request) -> web.Response:
    body = served_spec_bytes(tuple(request.app[SETTINGS].models))
    return web.Response(body=body, content_type="application/json")


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
