"""PDF uploads through a real server and through the local CLI."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import orjson
import pytest

from tests.integration.server import render_text, running_server
from tests.pdfs import empty_page_pdf, encrypted_pdf, scanned_pdf

PAGES = [["Chapter one begins"], ["The second page", "has two lines"], ["Final page 3"]]


async def post_pdf(session: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="doc.pdf", content_type="application/pdf")
    async with session.post(f"{url}/ocr", data=form) as resp:
        return resp.status, await resp.json()


@pytest.fixture(scope="module")
def server():
    with running_server("--max-pdf-pages", "3") as srv:
        yield srv


async def test_three_page_scan_gives_three_pages_in_order(server) -> None:
    pdf = scanned_pdf([render_text(lines) for lines in PAGES])
    async with aiohttp.ClientSession() as s:
        code, body = await post_pdf(s, server.url, pdf)
    assert code == 200 and body["success"], body
    assert [p["page"] for p in body["pages"]] == [1, 2, 3]
    assert [p["text"] for p in body["pages"]] == ["\n".join(lines) for lines in PAGES]
    assert body["text"] == "\n\n".join("\n".join(lines) for lines in PAGES)
    assert {b["page"] for b in body["boxes"]} == {1, 2, 3} and len(body["boxes"]) == 4
    assert all(p["image_dims"]["w"] > 100 for p in body["pages"])


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: scanned_pdf([render_text(["x"])] * 4), 413, "limit is 3 pages"),
        (lambda: empty_page_pdf(14400, 14400), 413, "pixels per page"),
        (encrypted_pdf, 400, "encrypted"),
        (lambda: scanned_pdf([render_text(["x"])])[:400], 400, "not a readable PDF"),
        (lambda: empty_page_pdf(pages=0), 400, "not a readable PDF"),
        (lambda: b"%PDF-1.7\n" + b"\x00" * 100, 400, "not a readable PDF"),
    ],
    ids=["too-many-pages", "absurd-page-size", "encrypted", "truncated", "no-pages", "junk"],
)
async def test_bad_pdfs_get_a_clear_4xx(server, make, status, words) -> None:
    async with aiohttp.ClientSession() as s:
        code, body = await post_pdf(s, server.url, make())
        assert code == status and body["success"] is False and words in body["error"], body
        async with s.get(f"{server.url}/health") as resp:
            assert resp.status == 200


def test_local_cli_reads_a_pdf(tmp_path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(scanned_pdf([render_text(lines) for lines in PAGES[:2]]))
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "ocr", "--device", "cpu", "--json", str(path)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = orjson.loads(out.stdout)
    assert [p["text"] for p in result["pages"]] == ["\n".join(lines) for lines in PAGES[:2]]
