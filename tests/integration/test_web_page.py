"""The web page at ``/``: served by a real server, self-contained, and working in a real browser.

The browser test drives headless Chromium over the DevTools protocol (a websocket, through aiohttp):
it uploads the bundled sample, reads the text, checks the boxes were drawn, presses Offload and
Release, and fails on any console error (a CSP violation included). It skips without Chromium.
Set DSOCR_SCREENSHOT_DIR to keep its screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.integration.server import running_server

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "supervisor" / "web"
SAMPLE = ROOT / "tests" / "data" / "sample.png"
# namespace names, never fetched
XML_NAMESPACES = {"http://www.w3.org/2000/svg"}
URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.IGNORECASE)


class Page(HTMLParser):
    """What the checks need from the HTML: tags with their attributes, and script bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.script_bodies.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies[-1] += data


def external_urls(text: str) -> list[str]:
    return [m.group(0) for m in URL.finditer(text) if not any(ns.startswith(m.group(0)) for ns in XML_NAMESPACES)]


async def test_page_and_static_files_are_served_self_contained() -> None:
    with running_server() as server:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{server.url}/") as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
                html = await resp.text()
            page = Page()
            page.feed(html)

            # every script is a file from this server: nothing inline, nothing elsewhere
            scripts = [attrs for tag, attrs in page.tags if tag == "script"]
            assert scripts and all(attrs.get("src") for attrs in scripts)
            assert all(not body.strip() for body in page.script_bodies)
            for tag, attrs in page.tags:
                for name in attrs:
                    assert not name.lower().startswith("on"), f"inline handler {name} on <{tag}>"
                    assert name.lower() != "style", f"inline style on <{tag}> (CSP style-src 'self')"
            for name in ("viewport", "color-scheme"):
                assert any(tag == "meta" and attrs.get("name") == name for tag, attrs in page.tags)

            # every form control has a label
            ids = {attrs["id"] for tag, attrs in page.tags if attrs.get("id")}
            labelled = {attrs.get("for") for tag, attrs in page.tags if tag == "label"}
            for tag, attrs in page.tags:
                if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
                    assert attrs.get("id") in labelled or attrs.get("aria-label"), f"<{tag} id={attrs.get('id')}>"
            assert {"file", "model", "prompt-type", "find-term", "custom-prompt", "run", "copy"} <= ids

            referenced = [attrs.get("src") or attrs.get("href") for tag, attrs in page.tags
                          if tag in ("script", "link", "img") and (attrs.get("src") or attrs.get("href"))]  # fmt: skip
            assert referenced
            types = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",),
                     ".svg": ("image/svg+xml",)}  # fmt: skip
            texts = {"index.html": html}
            for ref in referenced:
                assert not ref.startswith(("http:", "https:", "//")), ref
                async with s.get(f"{server.url}/{ref.lstrip('/')}") as resp:
                    assert resp.status == 200, ref
                    assert resp.content_type in types[Path(ref).suffix], (ref, resp.content_type)
                    texts[ref] = await resp.text()
            for name in ("app.js", "style.css"):
                assert f"static/{name}" in texts

            for name, text in texts.items():
                assert external_urls(text) == [], f"{name} refers to another host"
            css = texts["static/style.css"]
            assert "@import" not in css and "url(" not in css  # no fonts or images from anywhere
            assert "prefers-color-scheme: dark" in css and ":focus-visible" in css
            js = texts["static/app.js"]
            for forbidden in ("eval(", "new Function", "innerHTML", "document.write"):
                assert forbidden not in js, forbidden
            # what the page talks to exists
            for path in ("ocr", "gpu/status", "gpu/offload", "gpu/release"):
                assert f'"{path}' in js or f"`{path}" in js or "gpu/${action}" in js

            async with s.get(f"{server.url}/static/nothing.js") as resp:
                assert resp.status == 404


def test_static_files_on_disk_match_what_the_page_needs() -> None:
    assert {p.name for p in WEB.iterdir()} >= {"index.html", "app.js", "style.css", "favicon.svg"}
    # the package data rule ships them in a wheel
    assert 'supervisor = ["web/*"]' in (ROOT / "pyproject.toml").read_text()


# -- a real browser ---------------------------------------------------------------------------------

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class Browser:
    """Headless Chromium driven over the DevTools protocol: one page, its console errors recorded."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = msg.json()
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future and not future.done():
                    future.set_result(data)
                continue
            method, params = data.get("method", ""), data.get("params", {})
            self.events.setdefault(method, []).append(params)
            if method == "Runtime.exceptionThrown":
                self.errors.append(str(params["exceptionDetails"].get("exception", {}).get("description")
                                       or params["exceptionDetails"].get("text")))  # fmt: skip
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.errors.append(f"{params['entry'].get('source')}: {params['entry']['text']}")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"not true within {timeout}s: {expression}")

    async def goto(self, url: str) -> None:
        self.events.pop("Page.loadEventFired", None)
        await self.send("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not self.events.get("Page.loadEventFired"):
            assert time.monotonic() < deadline, "page did not load"
            await asyncio.sleep(0.05)

    async def upload(self, selector: str, path: Path) -> None:
        root = await self.send("DOM.getDocument")
        node = await self.send("DOM.querySelector", nodeId=root["root"]["nodeId"], selector=selector)
        await self.send("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(path)])

    async def screenshot(self, path: Path) -> None:
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM
    profile = tempfile.mkdtemp(prefix="dsocr-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-extensions", "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"chromium exited: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "chromium did not start"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                b = Browser(ws)
                for domain in ("Page", "Runtime", "Log", "DOM"):
                    await b.send(f"{domain}.enable")
                try:
                    yield b
                finally:
                    b.reader.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_dir(tmp_path: Path) -> Path:
    keep = os.environ.get("DSOCR_SCREENSHOT_DIR")
    path = Path(keep) if keep else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


BADGE = "document.querySelector('.model .badge')?.textContent"
TEXT_SHOWN = "(t => !t.hidden && t.textContent === 'dsocr sample 42')(document.getElementById('text'))"
ERROR_SHOWN = "(e => e.hidden ? '' : e.textContent)(document.getElementById('error'))"
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
async def test_in_a_browser_upload_read_boxes_offload_release(tmp_path: Path) -> None:
    shots = screenshot_dir(tmp_path)
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text, not a PNG")
    with running_server("--idle-timeout", "0") as server:
        async with browser() as b:
            await b.send("Emulation.setDeviceMetricsOverride", **DESKTOP)
            await b.goto(f"{server.url}/")
            assert await b.wait_for(f"{BADGE} === 'unloaded'")
            assert await b.js("[...document.getElementById('model').options].map(o => o.value)") == ["ppocr"]
            assert await b.js("document.getElementById('run').disabled") is True

            await b.upload("#file", SAMPLE)
            await b.wait_for("document.getElementById('preview-img').complete && "
                             "document.getElementById('preview-img').naturalWidth === 361")  # fmt: skip
            await b.js("document.getElementById('run').click()")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            assert await b.js("document.getElementById('box-count').textContent") == "(1)"
            timing = await b.js("document.getElementById('timing').textContent")
            assert "Round trip" in timing and "Engine" in timing and "361 × 96 px" in timing
            # the box is drawn: the canvas has coloured pixels
            assert await b.js("""(() => { const c = document.getElementById('boxes');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false; })()""")
            assert await b.wait_for(f"{BADGE} === 'resident'", timeout=10)
            assert "pid" in await b.js("document.querySelector('.model .model-facts').textContent")
            await b.screenshot(shots / "page-desktop-light.png")

            await b.js("document.querySelector('[data-action=offload]').click()")
            assert await b.wait_for(f"{BADGE} === 'cached'", timeout=15)
            assert "offloaded ppocr" in await b.js("document.getElementById('action-note').textContent")
            await b.js("document.querySelector('[data-action=release]').click()")
            assert await b.wait_for(f"{BADGE} === 'unloaded'", timeout=15)

            # a server error is shown plainly
            await b.upload("#file", bad)
            await b.js("document.getElementById('run').click()")
            error = await b.wait_for(ERROR_SHOWN)
            assert "HTTP 400" in error

            # a PDF: no preview, the text of its pages
            pdf = tmp_path / "sample.pdf"
            with Image.open(SAMPLE) as img:
                img.convert("RGB").save(pdf, resolution=72.0)
            await b.upload("#file", pdf)
            assert await b.wait_for("!document.getElementById('no-preview').hidden")
            await b.js("document.getElementById('run').click()")
            await b.wait_for(TEXT_SHOWN, timeout=60)
            assert "Pages1" in await b.js("document.getElementById('timing').textContent")

            # a phone, dark
            await b.send("Emulation.setDeviceMetricsOverride", **PHONE)
            await b.send("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
            await b.upload("#file", SAMPLE)
            await b.js("document.getElementById('run').click()")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            overflow = await b.js("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the page is {overflow}px wider than a phone"
            await b.screenshot(shots / "page-phone-dark.png")
            # favicon requests and the like must not fail either; the 400 above is the page's own doing
            errors = [e for e in b.errors if "400 (Bad Request)" not in e]
            assert errors == [], errors


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
async def test_in_a_browser_the_page_asks_for_the_api_key(tmp_path: Path) -> None:
    with running_server("--api-key", "s3cret") as server:
        async with browser() as b:
            await b.goto(f"{server.url}/")
            assert await b.wait_for("document.getElementById('key-dialog').open")
            await b.js("document.getElementById('key-input').value = 's3cret'")
            await b.js("document.getElementById('key-save').click()")
            assert await b.wait_for(f"{BADGE} === 'unloaded'")
            assert await b.js("localStorage.getItem('dsocr.apiKey')") == "s3cret"
            await b.upload("#file", SAMPLE)
            await b.js("document.getElementById('run').click()")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            errors = [e for e in b.errors if "401 (Unauthorized)" not in e]
            assert errors == [], errors
