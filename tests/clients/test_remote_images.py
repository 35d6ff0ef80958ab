"""Remote image URLs: refused by default; with ``--allow-remote-images``, loopback, private and
link-local addresses are still refused, by IP literal or by a name that resolves to one."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from supervisor.http import image_urls
from supervisor.http.errors import ClientError
from supervisor.http.image_urls import check_public, decode_data_url, fetch_remote
from tests.integration.server import render_text, running_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def image_host() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 serving a real PNG; the paths it was asked for."""
    png = render_text()
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path != "/page.png":
                self.send_response(302 if self.path == "/moved" else 404)
                self.send_header("Location", "/page.png")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], asked
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_with_the_option_loopback_private_and_link_local_urls_are_still_refused(image_host) -> None:
    port, asked = image_host
    with running_server("--allow-remote-images") as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)
        for url in (f"http://127.0.0.1:{port}/page.png", f"http://localhost:{port}/page.png",
                    f"http://[::1]:{port}/page.png", f"http://[::ffff:127.0.0.1]:{port}/page.png",
                    "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/page.png",
                    "http://192.168.1.1/page.png", "http://0.0.0.0/page.png"):  # fmt: skip
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(
                    model="ppocr",
                    messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
                )
            assert "loopback, private or local address" in caught.value.body["message"], url
    assert asked == []  # nothing was fetched


def test_public_address_check() -> None:
    for address in ("127.0.0.1", "::1", "10.0.0.8", "172.16.3.4", "192.168.0.1", "169.254.169.254", "fe80::1",
                    "fc00::1", "0.0.0.0", "::ffff:10.0.0.1", "100.64.0.1", "224.0.0.1", "255.255.255.255"):  # fmt: skip
        with pytest.raises(ClientError):
            check_public(address)
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        check_public(address)


def test_data_urls() -> None:
    assert decode_data_url("data:image/png;base64,aGVsbG8=", 100) == b"hello"
    for bad, status in (("data:image/png,hello", 400), ("data:image/png;base64,@@", 400),
                        ("data:image/png;base64,", 400), ("data:;base64," + "A" * 400, 413)):  # fmt: skip
        with pytest.raises(ClientError) as caught:
            decode_data_url(bad, 100)
        assert caught.value.status == status, bad


async def test_a_fetch_is_bounded_and_follows_no_redirect(image_host, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetch itself, with the address rule lifted (only public hosts pass it, none is reachable here)."""
    port, asked = image_host
    monkeypatch.setattr(image_urls, "check_public", lambda address: None)
    png = render_text()
    assert await fetch_remote(f"http://127.0.0.1:{port}/page.png", limit=len(png)) == png
    for path, status, words in (("/page.png", 413, "exceeds the limit"), ("/moved", 400, "HTTP 302"),
                                ("/missing", 400, "HTTP 404")):  # fmt: skip
        with pytest.raises(ClientError) as caught:
            await fetch_remote(f"http://127.0.0.1:{port}{path}", limit=len(png) - 1)
        assert caught.value.status == status and words in caught.value.message, path
    assert asked.count("/page.png") == 2  # the redirect was not followed
