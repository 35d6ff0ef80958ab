"""``POST /ocr/stream`` (one NDJSON line per page as it finishes, then a summary) and the minimal
``POST /pdf-to-images`` the page uses for thumbnails, against a real server."""

from __future__ import annotations

import base64
import io

import aiohttp
import orjson
from PIL import Image

from tests.integration.server import LINES, render_text, running_server
from tests.pdfs import scanned_pdf

PAGES = [["First page"], ["Second page", "two lines"]]


def form(data: bytes, name: str, **fields: str) -> aiohttp.FormData:
    out = aiohttp.FormData()
    for key, value in fields.items():
        out.add_field(key, value)
    out.add_field("file", data, filename=name)
    return out


async def test_stream_sends_each_page_then_a_summary_and_logs_one_line() -> None:
    pdf = scanned_pdf([render_text(lines) for lines in PAGES])
    with running_server("--idle-timeout", "0") as server:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{server.url}/ocr/stream", data=form(pdf, "doc.pdf")) as resp:
                assert resp.status == 200 and resp.content_type == "application/x-ndjson"
                assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                lines = [orjson.loads(line) async for line in resp.content if line.strip()]
            # the first request after the start finds the model loading, and is told so first
            notice = {
                "loading": True,
                "model": "ppocr",
                "state": "loading",
                "message": "loading model ppocr (loading)…",
            }
            assert lines.pop(0) == notice
            assert [(x.get("page"), x.get("pages")) for x in lines[:2]] == [(1, 2), (2, 2)]
            assert [x["text"] for x in lines[:2]] == ["\n".join(p) for p in PAGES]
            assert len(lines[1]["boxes"]) == 2 and lines[1]["image_dims"]["w"] > 0
            summary = lines[2]
            assert summary["done"] is True and summary["success"] is True and summary["pages"] == 2
            assert summary["metadata"]["model"] == "ppocr" and summary["metadata"]["filename"] == "doc.pdf"

            # an image is one page (the model resident: no notice); an error found before the
            # first page is an ordinary JSON error
            async with s.post(f"{server.url}/ocr/stream", data=form(render_text(), "p.png")) as resp:
                lines = [orjson.loads(line) async for line in resp.content if line.strip()]
            assert lines[0]["page"] == 1 and lines[0]["text"] == "\n".join(LINES) and lines[1]["success"]
            async with s.post(f"{server.url}/ocr/stream", data=form(b"not an image", "x.png")) as resp:
                assert resp.status == 400 and "not a readable image" in (await resp.json())["error"]
            # the first page is read before the stream starts: its error is an ordinary 4xx too
            fields = {"prompt_type": "describe"}  # ppocr cannot describe
            async with s.post(f"{server.url}/ocr/stream", data=form(render_text(), "p.png", **fields)) as resp:
                assert resp.status == 400 and "describe" in (await resp.json())["error"]
        log = server.output()
    assert "ocr model=ppocr pages=2 seconds=" in log and "status=200" in log and "status=400" in log


async def test_pdf_to_images_gives_every_page_as_a_png_data_url() -> None:
    pdf = scanned_pdf([render_text(lines) for lines in PAGES])
    with running_server("--max-pdf-pages", "2") as server:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{server.url}/pdf-to-images", data=form(pdf, "doc.pdf")) as resp:
                body = await resp.json()
            assert body["success"] is True and body["page_count"] == 2
            for number, image in enumerate(body["images"], start=1):
                assert image["page_number"] == number and image["name"] == f"page_{number}.png"
                head, _, data = image["data"].partition(",")
                assert head == "data:image/png;base64"
                with Image.open(io.BytesIO(base64.b64decode(data))) as png:
                    assert png.size == (image["width"], image["height"])
            # the same page limit as /ocr
            three = scanned_pdf([render_text(lines) for lines in [*PAGES, ["Third"]]])
            async with s.post(f"{server.url}/pdf-to-images", data=form(three, "doc.pdf")) as resp:
                assert resp.status == 413 and "limit is 2 pages" in (await resp.json())["error"]


async def test_a_client_gone_after_the_loading_line_leaves_nothing_waiting() -> None:
    with running_server("--idle-timeout", "0") as server:
        async with aiohttp.ClientSession() as s:
            resp = await s.post(f"{server.url}/ocr/stream", data=form(render_text(), "p.png"))
            assert resp.status == 200
            assert orjson.loads(await resp.content.readline())["loading"] is True
            resp.close()  # gone before its page (read on, or dropped when the server next writes)
            # the next request is served as usual, and nothing is left in the queue
            async with s.post(f"{server.url}/ocr/stream", data=form(render_text(), "p.png")) as resp:
                lines = [orjson.loads(line) async for line in resp.content if line.strip()]
            assert lines[-1]["success"] and lines[-2]["text"] == "\n".join(LINES)
            async with s.get(f"{server.url}/gpu/status") as resp:
                assert (await resp.json())["queue_depth"] == 0
        log = server.output()
    assert "Traceback" not in log and " ERROR " not in log, log
