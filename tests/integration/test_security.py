"""Access control, CORS, security headers, request ids and metrics, on a real server.

One server with ``--api-key s3cret --cors-origin http://allowed.test`` serves the module; the
checks that need a server without them start their own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.core.settings import Settings
from tests.integration.server import LINES, Server, render_text, running_server

pytestmark = pytest.mark.timeout(240)

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "http://allowed.test"
PAGE = render_text()
PROTECTED = [("GET", "/gpu/status"), ("POST", "/ocr"), ("POST", "/gpu/offload"), ("POST", "/gpu/stop"),
             ("POST", "/gpu/release"), ("GET", "/metrics")]  # fmt: skip
TIMEOUT = aiohttp.ClientTimeout(total=120)
NO_KEY_ENV = {"DSOCR_API_KEY": ""}  # whatever the environment holds, these servers get no key from it


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server("--api-key", KEY, "--cors-origin", ORIGIN, "--idle-timeout", "0", env=NO_KEY_ENV) as srv:
        yield srv


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DSOCR_API_KEY"}
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**base, **env})  # fmt: skip


def ocr_form() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", PAGE, filename="page.png", content_type="image/png")
    return form


async def _unauthorized(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 401, (resp.method, resp.url, resp.status)
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["success"] is False and "API key" in body["error"] and body["request_id"], body
    assert resp.headers["X-Request-ID"] == body["request_id"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"  # errors carry the headers too


# -- API key --------------------------------------------------------------------------------


async def test_public_routes_need_no_key(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        async with s.get(f"{server.url}/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "healthy"
        async with s.get(f"{server.url}/") as resp:
            assert resp.status == 200, resp.status
            await resp.read()
        async with s.get(f"{server.url}/static/app.js") as resp:
            assert resp.status == 200, resp.status  # the page's own script
        async with s.get(f"{server.url}/static/no-such-file.js") as resp:
            assert resp.status == 404  # not found, but never a 401


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_routes_refuse_missing_or_wrong_key(server: Server, method: str, path: str) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        wrong = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"},
                 {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer "}]  # fmt: skip
        for headers in wrong:
            data = ocr_form() if path == "/ocr" else None
            async with s.request(method, f"{server.url}{path}", headers=headers, data=data) as resp:
                await _unauthorized(resp)


async def test_protected_routes_answer_with_the_key(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=AUTH) as s:
        async with s.post(f"{server.url}/ocr", data=ocr_form()) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["text"] == "\n".join(LINES), body
        for method, path in PROTECTED:
            if path == "/ocr":
                continue
            async with s.request(method, f"{server.url}{path}") as resp:
                assert resp.status == 200, (path, resp.status, await resp.text())


def test_cli_reads_the_key_from_the_environment(server: Server) -> None:
    out = cli("status", "--url", server.url, env={})
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "401" in out.stderr and "API key" in out.stderr, out.stderr
    out = cli("status", "--url", server.url, env={"DSOCR_API_KEY": "wrong"})
    assert out.returncode == 1 and "401" in out.stderr, out.stderr
    out = cli("status", "--url", server.url, env={"DSOCR_API_KEY": KEY})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ppocr: "), out.stdout


def test_default_bind_is_loopback() -> None:
    assert Settings().host == "127.0.0.1"
    out = cli("serve", "--help", env={})
    assert out.returncode == 0
    assert "default: 127.0.0.1" in " ".join(out.stdout.split()), out.stdout


# -- CORS and headers -----------------------------------------------------------------------


async def test_cors_only_for_the_allowed_origin(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        async with s.get(f"{server.url}/health", headers={"Origin": ORIGIN}) as resp:
            assert resp.status == 200 and resp.headers.get("Access-Control-Allow-Origin") == ORIGIN
            assert "Origin" in resp.headers.getall("Vary", [])
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"}  # fmt: skip
        async with s.options(f"{server.url}/ocr", headers=preflight) as resp:  # no key: browsers send none
            assert resp.status == 204, resp.status
            assert resp.headers.get("Access-Control-Allow-Origin") == ORIGIN
            assert "POST" in resp.headers.get("Access-Control-Allow-Methods", "")
            assert "authorization" in resp.headers.get("Access-Control-Allow-Headers", "").lower()
        async with s.get(f"{server.url}/gpu/status", headers={"Origin": ORIGIN}) as resp:
            await _unauthorized(resp)  # CORS allows the browser to read the answer, not to skip the key
            assert resp.headers.get("Access-Control-Allow-Origin") == ORIGIN

        other = "http://evil.test"
        async with s.get(f"{server.url}/health", headers={"Origin": other}) as resp:
            assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
        async with s.options(f"{server.url}/ocr", headers={**preflight, "Origin": other}) as resp:
            assert resp.status != 204 and "Access-Control-Allow-Origin" not in resp.headers
            assert "Access-Control-Allow-Methods" not in resp.headers
        async with s.get(f"{server.url}/gpu/status", headers={"Origin": other, **AUTH}) as resp:
            assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_security_headers_on_the_page(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        for path in ("/", "/static/app.js", "/health"):
            async with s.get(f"{server.url}{path}") as resp:
                assert resp.status == 200
                csp = resp.headers.get("Content-Security-Policy", "")
                directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
                assert directives.get("script-src") == ["'self'"], csp
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
                assert "'none'" in directives.get("frame-ancestors", []), csp
                assert resp.headers.get("X-Content-Type-Options") == "nosniff"
                assert resp.headers.get("X-Frame-Options") == "DENY"


async def test_request_id_is_echoed_and_logged(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        form = ocr_form()
        form.add_field("model", "no-such-model")
        headers = {**AUTH, "X-Request-ID": "sec-test-0042"}
        async with s.post(f"{server.url}/ocr", data=form, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["request_id"] == "sec-test-0042", body
            assert resp.headers["X-Request-ID"] == "sec-test-0042"
        async with s.get(f"{server.url}/gpu/status", headers={"X-Request-ID": "sec-test-0043"}) as resp:
            await _unauthorized(resp)
            assert resp.headers["X-Request-ID"] == "sec-test-0043"
        async with s.get(f"{server.url}/health") as resp:  # none sent: one is made
            assert len(resp.headers.get("X-Request-ID", "")) >= 8
    await asyncio.sleep(0.2)  # the log line is written as the answer goes
    log = server.output()
    line = next((ln for ln in log.splitlines() if "[sec-test-0042]" in ln), None)
    assert line is not None and "400" in line and "unknown model" in line, log[-3000:]
    assert any("[sec-test-0043]" in ln and "401" in ln for ln in log.splitlines()), log[-3000:]


# -- metrics --------------------------------------------------------------------------------


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]  # fmt: skip


async def test_metrics(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
        async with s.post(f"{server.url}/ocr", data=ocr_form(), headers=AUTH) as resp:
            assert resp.status == 200  # the model is loaded (it may already have been)
        for _ in range(3):
            async with s.get(f"{server.url}/health") as resp:
                assert resp.status == 200
        for path in ("/nope/1", "/nope/2", "/a/b/c?x=1", "/no%20such"):
            async with s.get(f"{server.url}{path}", headers=AUTH) as resp:
                assert resp.status == 404
            async with s.get(f"{server.url}{path}") as resp:
                assert resp.status == 401  # unknown paths need the key too
        async with s.get(f"{server.url}/metrics", headers=AUTH) as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()

    assert 'dsocr_transitions_total{model="ppocr",transition="load"} ' in text, text
    samples = _samples(text)

    def value(name: str, **labels: str) -> float:
        found = [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]
        assert found, (name, labels)
        return sum(found)

    assert value("dsocr_transitions_total", model="ppocr", transition="load") >= 1
    assert value("dsocr_http_requests_total", route="/health", method="GET", status="200") >= 3
    assert value("dsocr_http_requests_total", route="/ocr", method="POST", status="200") >= 1
    assert value("dsocr_http_requests_total", route="unmatched", method="GET", status="404") >= 4
    assert value("dsocr_http_requests_total", route="unmatched", method="GET", status="401") >= 4
    assert value("dsocr_http_request_duration_seconds_count", route="/ocr", method="POST") >= 1
    assert value("dsocr_http_request_duration_seconds_bucket", route="/health", method="GET", le="+Inf") >= 3
    assert value("dsocr_queue_depth", model="ppocr") == 0
    assert value("dsocr_model_state", model="ppocr", state="resident") == 1
    assert value("dsocr_model_state", model="ppocr") == 1  # exactly one state at a time
    assert value("dsocr_shared_memory_bytes", model="ppocr") > 10_000_000
    assert value("dsocr_engine_running", model="ppocr") == 1
    # no label explosion: routes are the app's routes or "unmatched", never raw paths
    routes = {lab["route"] for n, lab, _ in samples if "route" in lab}
    assert routes <= {"/", "/health", "/ocr", "/metrics", "/gpu/status", "/gpu/offload", "/gpu/release",
                      "/gpu/stop", "/gpu/load", "/static/{path}", "unmatched"}, routes  # fmt: skip


async def test_metrics_follow_a_release(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers=AUTH) as s:
        async with s.post(f"{server.url}/gpu/release") as resp:
            assert resp.status == 200
        async with s.get(f"{server.url}/metrics") as resp:
            samples = _samples(await resp.text())
    shm = [v for n, lab, v in samples if n == "dsocr_shared_memory_bytes" and lab["model"] == "ppocr"]
    unloaded = [v for n, lab, v in samples if n == "dsocr_model_state" and lab["state"] == "unloaded"]
    assert shm == [0.0] and unloaded == [1.0], (shm, unloaded)


# -- a server without key or CORS -----------------------------------------------------------


async def test_server_without_key_or_cors() -> None:
    with running_server("--idle-timeout", "0", env=NO_KEY_ENV) as plain:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
            async with s.get(f"{plain.url}/gpu/status", headers={"Origin": ORIGIN}) as resp:
                assert resp.status == 200  # no key needed
                assert "Access-Control-Allow-Origin" not in resp.headers
            preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
            async with s.options(f"{plain.url}/ocr", headers=preflight) as resp:
                assert resp.status != 204 and "Access-Control-Allow-Origin" not in resp.headers
            async with s.get(f"{plain.url}/") as resp:
                assert resp.headers.get("X-Frame-Options") == "DENY"
        out = cli("status", "--url", plain.url, env={})
        assert out.returncode == 0 and out.stdout.startswith("ppocr: unloaded"), (out.stdout, out.stderr)
