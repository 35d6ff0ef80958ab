"""``/openapi.json`` holds every route (and only those), is valid OpenAPI 3.1, and a live server
conforms to it under schemathesis; ``/docs`` shows it with the vendored Swagger UI under the CSP."""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import aiohttp
import jsonschema
import orjson
import pytest
from aiohttp import web

from ipc.catalog import MODELS
from supervisor.api.openapi.routes import DOCS_DIR, FORM_ROUTES, SPEC, served_spec
from supervisor.app import make_app
from supervisor.core.settings import Settings
from supervisor.http.security import CSP
from tests.integration.browser import browser
from tests.integration.server import Server, get_json

pytestmark = pytest.mark.timeout(300)
METHODS = {"get", "post", "put", "patch", "delete"}
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.png"


def spec() -> dict:
    return orjson.loads(SPEC.read_bytes())


def served_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route of the application, but aiohttp's static folders."""
    app = make_app(Settings(device="cpu"))
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and not isinstance(route.resource, web.StaticResource)
    }


def documented_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec()["paths"].items() for method in item if method in METHODS}


def test_every_route_is_in_the_spec_and_every_operation_is_a_route() -> None:
    routes, documented = served_routes(), documented_routes()
    assert routes - documented == set()  # every route is described
    assert documented - routes == set()  # and every description is a route


def test_the_spec_is_openapi_3_1_with_valid_schemas_and_answers() -> None:
    document = spec()
    assert document["openapi"] == "3.1.0"
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)  # raises, naming what is wrong
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and operation["responses"], (method, path)
            assert "200" in operation["responses"], (method, path)
            if path != "/":
                assert "4XX" in operation["responses"] and "5XX" in operation["responses"], (method, path)


async def test_health_has_the_upstreams_types(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        health = await get_json(session, f"{server.url}/health")
    assert health["gpu_manager"] is True
    assert health["platform"] == platform.system() == "Linux"
    assert isinstance(health["idle_time"], float) and isinstance(health["timeout"], float)


async def test_openapi_json_and_docs_are_served_from_the_package(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/openapi.json") as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            assert await resp.json() == served_spec(["ppocr"])
        async with session.get(f"{server.url}/docs") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert resp.headers["Content-Security-Policy"] == CSP  # the service's own, no exception
            html = await resp.text()
        assert "//" not in html.replace("<!DOCTYPE", "")  # no CDN, nothing from another host
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
            assert f"/docs/{asset}" in html
            async with session.get(f"{server.url}/docs/{asset}") as resp:
                assert resp.status == 200 and resp.content_length == (DOCS_DIR / asset).stat().st_size
    notes = (DOCS_DIR / "README.md").read_text()
    assert "swagger-ui-dist 5.35.0" in notes and "Apache License 2.0" in notes
    assert (DOCS_DIR / "LICENSE").read_text().startswith("\n                                 Apache License")


async def test_docs_renders_every_operation_in_a_browser_without_csp_errors(server: Server) -> None:
    operations = sum(1 for item in spec()["paths"].values() for method in item if method in METHODS)
    async with browser() as b:
        await b.goto(f"{server.url}/docs")
        await b.wait_for(f"document.querySelectorAll('.opblock').length === {operations}")
        assert await b.js("document.querySelector('.info .title').textContent.startsWith('dsocr')")
        assert b.errors == []


def test_every_form_field_has_a_working_default_from_the_catalog() -> None:
    for models in (["ppocr"], ["deepseek-ocr-2", "ppocr"]):
        document = served_spec(models)
        for path in FORM_ROUTES:
            form = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
            fields = form["properties"]
            # Swagger fills a field without a default with "string": every one but the file has one
            assert [name for name, field in fields.items() if name != "file" and "default" not in field] == []
            assert fields["model"]["enum"] == models and fields["model"]["default"] == models[0]
            assert set(fields["prompt_type"]["enum"]) == {t for m in models for t in MODELS[m].prompt_types}
            assert fields["prompt_type"]["default"] == "ocr"


def test_every_error_an_upload_can_get_is_documented_by_its_status() -> None:
    # Swagger shows a status that is only covered by 4XX/5XX as "Undocumented"
    for path in (*FORM_ROUTES, "/pdf-to-images", "/v1/chat/completions", "/v1/ocr"):
        responses = spec()["paths"][path]["post"]["responses"]
        assert {"400", "401", "408", "413", "503"} <= set(responses), path
        assert all(responses[code]["description"] for code in responses)


async def test_docs_try_it_out_on_ocr_with_only_a_file_chosen_answers_200(server: Server) -> None:
    operation = "#operations-ocr-post_ocr"
    async with browser() as b:
        await b.goto(f"{server.url}/docs")
        await b.wait_for(f"!!document.querySelector('{operation} .opblock-summary-control')")
        await b.click(f"{operation} .opblock-summary-control")  # expands it
        await b.wait_for(f"!!document.querySelector('{operation} .try-out__btn')")
        await b.click(f"{operation} .try-out__btn")
        await b.wait_for(f"!!document.querySelector('{operation} input[type=file]')")
        await b.upload(f"{operation} input[type=file]", SAMPLE)
        await b.click(f"{operation} .execute")
        status = f"document.querySelector('{operation} .live-responses-table tbody .response-col_status')?.textContent"
        assert (await b.wait_for(status, timeout=60)).strip().startswith("200")
        body = await b.js(
            f"document.querySelector('{operation} .live-responses-table tbody .response-col_description').textContent"
        )
        assert "dsocr sample 42" in body
        errors = [e for e in b.errors if "deep link whitespace" not in e]  # Swagger's own notice
        assert errors == [], errors


@pytest.mark.skipif(importlib.util.find_spec("schemathesis") is None, reason="schemathesis needs Python >= 3.11")
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_spec(server: Server, tmp_path: Path) -> None:
    not_here = [f"--exclude-path={path}" for _, path in documented_routes() - served_routes()]
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "5", "--generation-deterministic",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance",
         "--request-timeout", "60", "--no-color", *not_here],
        cwd=tmp_path, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
