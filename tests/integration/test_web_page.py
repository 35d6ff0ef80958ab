"""The web page at ``/``: served by a real server, self-contained, and working in real Chromium
(tests/integration/browser.py): upload, read, boxes, Offload / Stop engine / Release, a server error,
a PDF, a phone in dark mode, and the card of a server that stopped answering. Any console error (a
CSP violation included) fails a test. Screenshots: see tests/integration/browser.py.
"""

from __future__ import annotations

import re
import signal
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.integration.browser import DESKTOP, PHONE, browser
from tests.integration.server import running_server

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "supervisor" / "web"
VENDORED = {"marked.esm.js": "marked v18.2.1", "purify.es.js": "DOMPurify 3.4.18"}
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
            # the page's own modules (imported by app.js) and the pinned vendored libraries
            modules = sorted(p.name for p in WEB.glob("*.js"))
            assert {"app.js", "api.js", "status.js", "document.js", "format.js"} <= set(modules)
            for name in modules:
                async with s.get(f"{server.url}/static/{name}") as resp:
                    assert resp.status == 200 and resp.content_type in types[".js"], name
                    texts[f"static/{name}"] = await resp.text()
            for name, banner in VENDORED.items():
                async with s.get(f"{server.url}/static/vendor/{name}") as resp:
                    assert resp.status == 200 and resp.content_type in types[".js"], name
                    vendored = await resp.text()
                assert banner in vendored[:400] and "sourceMappingURL" not in vendored
                assert name in (WEB / "vendor" / "README.md").read_text()

            for name, text in texts.items():
                assert external_urls(text) == [], f"{name} refers to another host"
            css = texts["static/style.css"]
            assert "@import" not in css and "url(" not in css  # no fonts or images from anywhere
            assert "prefers-color-scheme: dark" in css and ":focus-visible" in css
            js = "\n".join(texts[f"static/{name}"] for name in modules)
            for forbidden in ("eval(", "new Function", "innerHTML", "document.write"):
                assert forbidden not in js, forbidden
            # what the page talks to exists
            for path in ("ocr/stream", "pdf-to-images", "gpu/status", "gpu/${action}"):
                assert f'"{path}' in js or f"`{path}" in js, path

            async with s.get(f"{server.url}/static/nothing.js") as resp:
                assert resp.status == 404


def test_static_files_on_disk_match_what_the_page_needs() -> None:
    assert {p.name for p in WEB.iterdir()} >= {"index.html", "app.js", "style.css", "favicon.svg"}
    # the package data rule ships them in a wheel
    assert 'supervisor = ["web/*", "web/vendor/*"]' in (ROOT / "pyproject.toml").read_text()


# -- a real browser ---------------------------------------------------------------------------------

BADGE = "document.querySelector('.model .badge')?.textContent"
TEXT_SHOWN = "(t => !t.hidden && t.textContent === 'dsocr sample 42')(document.getElementById('text'))"
ERROR_SHOWN = "(e => e.hidden ? '' : e.textContent)(document.getElementById('error'))"
BUTTONS = (
    "[...document.querySelectorAll('.model [data-action]')].map(b => b.dataset.action + (b.disabled ? ':off' : ':on'))"
)
BOXES_DRAWN = """(() => { const c = document.getElementById('boxes');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false; })()"""
# the input and result cards side by side (desktop) or one above the other (phone)
SIDE_BY_SIDE = """(() => { const a = document.querySelector('.input-card').getBoundingClientRect();
    const b = document.querySelector('.result-card').getBoundingClientRect();
    return Math.abs(a.top - b.top) < 2 && b.left >= a.right; })()"""


async def test_in_a_browser_read_boxes_offload_stop_release_unreachable(tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text, not a PNG")
    server = None
    with running_server("--idle-timeout", "0") as server:
        async with browser() as b:
            await b.viewport(DESKTOP)
            await b.goto(f"{server.url}/")
            assert await b.wait_for(f"{BADGE} === 'unloaded'")
            assert await b.js("[...document.getElementById('model').options].map(o => o.value)") == ["ppocr"]
            assert await b.js("document.getElementById('run').disabled") is True
            assert await b.js(BUTTONS) == ["offload:off", "stop:off", "release:off"]
            # every button says what it does, in words on the card
            hints = await b.js("[...document.querySelectorAll('.model .hint')].map(h => h.textContent)")
            assert len(hints) == 3 and "cached" in hints[1] and "GPU memory" in hints[1]

            await b.upload("#file", SAMPLE)
            await b.wait_for("document.getElementById('preview-img').complete && "
                             "document.getElementById('preview-img').naturalWidth === 361")  # fmt: skip
            assert await b.js("document.getElementById('boxes-switch').hidden") is True  # nothing to draw yet
            await b.click("#run")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            assert await b.js("document.getElementById('box-count').textContent") == "(1)"
            assert await b.js("document.getElementById('boxes-switch').hidden") is False
            # the text comes with the page's line, the timing with the stream's last line
            await b.wait_for("document.getElementById('timing').textContent.includes('Round trip')")
            timing = await b.js("document.getElementById('timing').textContent")
            assert "Round trip" in timing and "Engine" in timing and "361 × 96 px" in timing
            assert await b.js(BOXES_DRAWN)
            assert await b.wait_for(f"{BADGE} === 'resident'", timeout=10)
            assert "pid" in await b.js("document.querySelector('.model .model-facts').textContent")
            assert await b.js(SIDE_BY_SIDE) and await b.overflow() <= 0
            await b.screenshot("page-desktop-light.png")

            await b.click("[data-action=offload]")
            assert await b.wait_for(f"{BADGE} === 'cached'", timeout=15)
            assert "offloaded ppocr" in await b.js("document.getElementById('action-note').textContent")
            await b.click("[data-action=stop]")
            assert await b.wait_for(f"{BADGE} === 'cached, engine stopped'", timeout=15)
            assert "stopped the engine of ppocr" in await b.js("document.getElementById('action-note').textContent")
            assert await b.js(BUTTONS) == ["offload:off", "stop:off", "release:on"]
            await b.screenshot("page-engine-stopped.png")
            # action notes expire rather than describe an old state
            assert await b.wait_for("document.getElementById('action-note').textContent === ''", timeout=15)
            await b.click("[data-action=release]")
            assert await b.wait_for(f"{BADGE} === 'unloaded'", timeout=15)

            # a server error is shown plainly
            await b.upload("#file", bad)
            await b.click("#run")
            error = await b.wait_for(ERROR_SHOWN)
            assert "HTTP 400" in error

            # a one-page PDF: its page is shown, its text read
            pdf = tmp_path / "sample.pdf"
            with Image.open(SAMPLE) as img:
                img.convert("RGB").save(pdf, resolution=72.0)
            await b.upload("#file", pdf)
            assert await b.wait_for("document.querySelectorAll('#thumbs .thumb').length === 1")
            await b.click("#run")
            await b.wait_for(TEXT_SHOWN, timeout=60)
            assert "Pages1" in await b.js("document.getElementById('timing').textContent")

            # a phone, dark
            await b.viewport(PHONE, dark=True)
            await b.upload("#file", SAMPLE)
            await b.click("#run")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            assert await b.overflow() <= 0, "the page is wider than a phone"
            assert not await b.js(SIDE_BY_SIDE)
            await b.screenshot("page-phone-dark.png")

            # the server goes away: the card greys out, says so, and offers no button
            server.stop(signal.SIGKILL)
            assert await b.wait_for("document.getElementById('live-text').textContent === 'Server unreachable'", 15)
            assert "does not answer" in await b.js("document.getElementById('status-error').textContent")
            assert await b.js(BUTTONS) == ["offload:off", "stop:off", "release:off"]
            assert await b.js("document.getElementById('models').classList.contains('stale')")
            assert await b.js(f"{BADGE}") == "unreachable"
            await b.viewport(DESKTOP, dark=True)
            await b.screenshot("page-unreachable.png")
            # the 400 above is the page's own doing; a dead server fails fetches
            errors = [e for e in b.errors if "400 (Bad Request)" not in e and "ERR_CONNECTION_REFUSED" not in e]
            assert errors == [], errors


async def test_in_a_browser_the_page_asks_for_the_api_key(tmp_path: Path) -> None:
    with running_server("--api-key", "s3cret") as server:
        async with browser() as b:
            await b.goto(f"{server.url}/")
            assert await b.wait_for("document.getElementById('key-dialog').open")
            await b.js("document.getElementById('key-input').value = 's3cret'")
            await b.click("#key-save")
            assert await b.wait_for(f"{BADGE} === 'unloaded'")
            assert await b.js("localStorage.getItem('dsocr.apiKey')") == "s3cret"
            await b.upload("#file", SAMPLE)
            await b.click("#run")
            await b.wait_for(TEXT_SHOWN, timeout=120)
            errors = [e for e in b.errors if "401 (Unauthorized)" not in e]
            assert errors == [], errors


# every download the page starts: the anchor's file name and its blob's text, captured as it is clicked
CAPTURE_DOWNLOADS = """(() => { window.downloads = []; const blobs = new Map(); const make = URL.createObjectURL;
    URL.createObjectURL = (blob) => { const url = make(blob); blobs.set(url, blob); return url; };
    HTMLAnchorElement.prototype.click = function () {
        const name = this.download;
        window.downloads.push(blobs.get(this.href).text().then(text => ({ name, text })));
    }; })()"""
# a file dropped on the page (outside the drop zone), as a drag from the desktop delivers it
DROP_SAMPLE = """(async () => { const canvas = Object.assign(document.createElement('canvas'), { width: 40, height: 20 });
    const blob = await new Promise(done => canvas.toBlob(done, 'image/png'));
    const data = new DataTransfer(); data.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
    document.body.dispatchEvent(new DragEvent('dragenter', { dataTransfer: data, bubbles: true }));
    const dropped = new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true });
    document.body.dispatchEvent(dropped);
    return dropped.defaultPrevented; })()"""


async def test_in_a_browser_a_dropped_file_is_read_copied_and_downloaded() -> None:
    with running_server() as server:
        async with browser() as b:
            await b.viewport(DESKTOP)
            await b.goto(f"{server.url}/")
            assert await b.wait_for(f"{BADGE} === 'unloaded'")
            assert await b.js(DROP_SAMPLE) is True  # handled by the page: no navigation away
            assert await b.wait_for("document.querySelectorAll('#queue li').length === 1")
            await b.js("document.getElementById('clear-queue').click()")
            await b.upload("#file", SAMPLE)
            await b.click("#run")
            await b.wait_for(TEXT_SHOWN, timeout=120)

            await b.js(CAPTURE_DOWNLOADS)
            for button in ("download", "download-json", "download-all-json", "download-all-md"):
                await b.click(f"#{button}")
            files = await b.wait_for("Promise.all(window.downloads)")
            names = [f["name"] for f in files]
            assert names == ["sample.txt", "sample.json", "dsocr-results.json", "dsocr-results.md"]
            assert files[0]["text"] == "dsocr sample 42"
            assert '"file": "sample.png"' in files[1]["text"] and "dsocr sample 42" in files[1]["text"]
            assert files[3]["text"].startswith("# sample.png\n\ndsocr sample 42")

            # headless Chromium refuses the clipboard: the page selects the text for Ctrl+C instead
            await b.click("#copy")
            copied = await b.wait_for("(t => t === 'Copied ✓' || t === 'Press Ctrl+C' ? t : '')"
                                      "(document.getElementById('copy').textContent)")  # fmt: skip
            assert copied
            assert await b.js("window.getSelection().toString()") in ("", "dsocr sample 42")
