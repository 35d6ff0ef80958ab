"""The routes of the clients dsocr speaks besides its own: OpenAI, Mistral, the upstream web UI,
and the OpenAPI document with its Swagger UI (issue 12)."""

from __future__ import annotations

from aiohttp import web

from supervisor.mistral_api import add_mistral_routes
from supervisor.openai_api import add_openai_routes
from supervisor.openapi import add_openapi_routes
from supervisor.upstream_api import add_upstream_routes


def add_client_routes(app: web.Application) -> None:
    add_openai_routes(app)
    add_mistral_routes(app)
    add_upstream_routes(app)
    add_openapi_routes(app)
