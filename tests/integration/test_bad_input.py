"""Bad input gets a clear 4xx and nothing else changes: one real server, real engine, real OCR.

Every case sends something wrong to ``/ocr`` and then checks the same things: the answer is a
4xx JSON ``{"success": false, "error": <text>, "request_id"}`` with an ``X-Request-ID`` header and
no traceback, ``/health`` still answers, and the engine that served the first good request is
still the one serving (no bad file may crash or restart it). A good request is checked at the
start, once in the middle and at the end. The files under ``tests/data/bad/`` are described in
their README; more cases are generated here, and a hypothesis test throws junk at the endpoint.

PDFs are left out: the server does not take them yet.
"""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.server import LINES, Server, get_json, render_text, running_server

pytestmark = pytest.mark.timeout(240)

BAD_DIR = Path(__file__).resolve().parent.parent / "data" / "bad"
EXPECTED = "\n".join(LINES)
PAGE = render_text()
SMALL_PNG = render_text(["ab"], size=12)
LIMIT_MB = 1
LIMIT = LIMIT_MB * 2**20
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=60)
PPOCR_PROMPT_TYPES = ("ocr", "free", "document")

# every file of the corpus -> (status, a piece of the error message)
CORPUS = {
    "empty.png": (400, "empty"),
    "random.bin": (400, "not a readable image"),
    "text.png": (400, "not a readable image"),
    "truncated.png": (400, "truncated"),
    "truncated_header.png": (400, "truncated"),
    "truncated.jpg": (400, "truncated"),
    "truncated_header.jpg": (400, "truncated"),
    "bad_crc.png": (400, "image"),
    "zero_size.png": (400, "image"),
    "bomb.png": (400, "pixels"),
    "bomb.jpg": (400, "pixels"),
    "unknown_pixel_format.dds": (400, "image"),
    "spider_stack.spi": (400, "image"),
}


@dataclass
class Live:
    server: Server
    engine_pid: int


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One server for the module, warmed by a good request: its engine must outlive every case."""
    with running_server("--max-upload-mb", str(LIMIT_MB), "--idle-timeout", "0") as server:

        async def warm() -> int:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
                code, body = await _post(s, server.url, _form(PAGE))
                assert code == 200 and body["text"] == EXPECTED, body
                status = await get_json(s, f"{server.url}/gpu/status")
                assert status["state"] == "resident" and status["engine_pid"], status
                return status["engine_pid"]

        yield Live(server, asyncio.run(warm()))
        # whatever was sent, nothing in the server's log may be a traceback
        server.log.seek(0)
        log = server.log.read().decode("utf-8", "replace")
        assert "Traceback" not in log, log[-6000:]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
        yield s


def _form(data: bytes, filename: str = "page.png", content_type: str = "image/png", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("file", data, filename=filename, content_type=content_type)
    return form


async def _post(session: aiohttp.ClientSession, url: str, data: object, **kwargs: object) -> tuple[int, dict]:
    async with session.post(f"{url}/ocr", data=data, **kwargs) as resp:
        return resp.status, await _json_of(resp)


async def _json_of(resp: aiohttp.ClientResponse) -> dict:
    raw = await resp.read()
    assert resp.content_type == "application/json", (resp.status, raw[:300])
    assert b"Traceback" not in raw, raw[:2000]
    return await resp.json()


async def _refused(resp: aiohttp.ClientResponse, status: int, *needles: str) -> dict:
    """Checks a clean refusal: the status, the JSON error body, the request id header."""
    body = await _json_of(resp)
    assert resp.status == status, (resp.status, body)
    assert body["success"] is False, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    assert body["request_id"] and resp.headers.get("X-Request-ID") == body["request_id"], (body, resp.headers)
    for needle in needles:
        assert needle.lower() in body["error"].lower(), (needle, body)
    return body


async def _unchanged(session: aiohttp.ClientSession, live: Live) -> None:
    """After a bad request: health answers and the same engine is still up with the model resident."""
    async with session.get(f"{live.server.url}/health") as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "healthy"
    status = await get_json(session, f"{live.server.url}/gpu/status")
    assert status["state"] == "resident", status
    assert status["engine_pid"] == live.engine_pid, ("the engine was replaced", status)
    assert live.server.proc.poll() is None


async def _good(session: aiohttp.ClientSession, live: Live) -> None:
    async with session.post(f"{live.server.url}/ocr", data=_form(PAGE)) as resp:
        body = await _json_of(resp)
        assert resp.status == 200 and body["success"] is True, body
        assert body["text"] == EXPECTED, body["text"]


def _server_rss_kb(pid: int, field: str = "VmRSS") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:"))


# -- a good request first -------------------------------------------------------------------


async def test_good_request_at_the_start(live: Live, session: aiohttp.ClientSession) -> None:
    await _good(session, live)
    await _unchanged(session, live)


# -- the corpus -----------------------------------------------------------------------------


def test_corpus_is_complete() -> None:
    files = {p.name for p in BAD_DIR.iterdir() if p.name != "README.md"}
    assert files == set(CORPUS), files ^ set(CORPUS)
    readme = (BAD_DIR / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in files), "every file is described in the README"


@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_corpus_file_is_refused(name: str, live: Live, session: aiohttp.ClientSession) -> None:
    status, needle = CORPUS[name]
    data = (BAD_DIR / name).read_bytes()
    async with session.post(f"{live.server.url}/ocr", data=_form(data, filename=name)) as resp:
        await _refused(resp, status, needle)
    await _unchanged(session, live)


# -- malformed requests ---------------------------------------------------------------------


async def test_empty_body(live: Live, session: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    async with session.post(f"{live.server.url}/ocr", data=b"", headers=headers) as resp:
        await _refused(resp, 400, "multipart")
    async with session.post(f"{live.server.url}/ocr", data=b"") as resp:  # no content type either
        await _refused(resp, 415, "multipart/form-data")
    await _unchanged(session, live)


async def test_multipart_without_boundary(live: Live, session: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "multipart/form-data"}
    async with session.post(f"{live.server.url}/ocr", data=b"--x\r\n\r\n", headers=headers) as resp:
        await _refused(resp, 400, "multipart")
    await _unchanged(session, live)


async def test_no_file_field(live: Live, session: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("prompt_type", "ocr")
    form.add_field("image", SMALL_PNG, filename="page.png", content_type="image/png")  # wrong name
    async with session.post(f"{live.server.url}/ocr", data=form) as resp:
        await _refused(resp, 400, "'file'")
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("prompt_type", "ocr")
    async with session.post(f"{live.server.url}/ocr", data=form) as resp:
        await _refused(resp, 400, "no 'file' field")
    await _unchanged(session, live)


async def test_empty_file(live: Live, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{live.server.url}/ocr", data=_form(b"")) as resp:
        await _refused(resp, 400, "empty")
    await _unchanged(session, live)


async def test_random_bytes(live: Live, session: aiohttp.ClientSession) -> None:
    rng = random.Random(99)
    for size in (1, 7, 100, 5000, 300_000):
        async with session.post(f"{live.server.url}/ocr", data=_form(rng.randbytes(size))) as resp:
            await _refused(resp, 400, "image")
    await _unchanged(session, live)


async def test_truncated_png_and_jpeg_made_here(live: Live, session: aiohttp.ClientSession) -> None:
    jpeg = _jpeg(PAGE)
    cases = [
        (PAGE[: len(PAGE) // 3], "page.png"),  # header fine, pixel data cut: the engine refuses it
        (PAGE[:33], "page.png"),  # cut right after IHDR
        (jpeg[: len(jpeg) // 2], "page.jpg"),
        (jpeg[:2], "page.jpg"),  # SOI only
    ]
    for data, name in cases:
        async with session.post(f"{live.server.url}/ocr", data=_form(data, filename=name)) as resp:
            await _refused(resp, 400)
    await _unchanged(session, live)


async def test_text_file_named_png(live: Live, session: aiohttp.ClientSession) -> None:
    data = b"<html><body>not an image</body></html>\n" * 20
    async with session.post(f"{live.server.url}/ocr", data=_form(data, filename="scan.png")) as resp:
        await _refused(resp, 400, "not a readable image")
    await _unchanged(session, live)


async def test_decompression_bomb_made_here(live: Live, session: aiohttp.ClientSession) -> None:
    bomb = _png_declaring(30000, 30000)
    assert len(bomb) < 200
    t0 = time.monotonic()
    async with session.post(f"{live.server.url}/ocr", data=_form(bomb)) as resp:
        await _refused(resp, 400, "pixels")
    assert time.monotonic() - t0 < 10  # refused from the header: nothing was decoded
    rss_kb = _server_rss_kb(live.server.pid)
    assert rss_kb < 200 * 1024, f"supervisor RSS {rss_kb} kB after the bomb"
    await _unchanged(session, live)


async def test_good_request_in_the_middle(live: Live, session: aiohttp.ClientSession) -> None:
    await _good(session, live)
    await _unchanged(session, live)


# -- sizes ----------------------------------------------------------------------------------


async def test_upload_over_the_limit_with_content_length(live: Live, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{live.server.url}/ocr", data=_form(b"\0" * (3 * LIMIT))) as resp:
        await _refused(resp, 413, "limit")
    # just over the limit: passes the Content-Length check, caught while the part is read
    async with session.post(f"{live.server.url}/ocr", data=_form(PAGE + b"\0" * (LIMIT + 1 - len(PAGE)))) as resp:
        await _refused(resp, 413, "limit")
    await _unchanged(session, live)


def test_chunked_upload_over_the_limit_is_refused_without_reading_it_all(live: Live) -> None:
    """No Content-Length: the server must answer 413 after about the limit, not after the upload."""
    total = 48 * 2**20
    rss_before = _server_rss_kb(live.server.pid)
    peak_before = _server_rss_kb(live.server.pid, "VmHWM")
    status, body, sent = _chunked_upload(live.server.port, total)
    peak_after = _server_rss_kb(live.server.pid, "VmHWM")
    rss_after = _server_rss_kb(live.server.pid)
    assert status == 413, (status, body)
    assert body["success"] is False and "limit" in body["error"], body
    assert sent < total // 2, f"the server let {sent} of {total} bytes in before answering"
    grown_mb = (peak_after - peak_before) / 1024
    assert grown_mb < 16, f"peak RSS grew by {grown_mb:.1f} MB for a {total >> 20} MB upload"
    assert (rss_after - rss_before) / 1024 < 16, (rss_before, rss_after)

    async def check() -> None:
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
            await _unchanged(s, live)

    asyncio.run(check())


# -- content types, fields, models ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [("application/json", b'{"file": "aGVsbG8="}'), ("text/plain", b"hello"),
     ("application/x-www-form-urlencoded", b"file=abc")],
)  # fmt: skip
async def test_wrong_content_type(
    content_type: str, payload: bytes, live: Live, session: aiohttp.ClientSession
) -> None:
    headers = {"Content-Type": content_type}
    async with session.post(f"{live.server.url}/ocr", data=payload, headers=headers) as resp:
        await _refused(resp, 415, "multipart/form-data")
    await _unchanged(session, live)


@pytest.mark.parametrize("prompt_type", ["zzz", "figure", ""])
async def test_prompt_type_ppocr_cannot_do(prompt_type: str, live: Live, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{live.server.url}/ocr", data=_form(PAGE, prompt_type=prompt_type)) as resp:
        body = await _refused(resp, 400, *PPOCR_PROMPT_TYPES)
    assert repr(prompt_type) in body["error"], body
    await _unchanged(session, live)


async def test_unknown_model(live: Live, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{live.server.url}/ocr", data=_form(PAGE, model="no-such-model")) as resp:
        await _refused(resp, 400, "unknown model", "ppocr")
    await _unchanged(session, live)


async def test_non_utf8_form_field(live: Live, session: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY.decode()}"}
    for name in (b"prompt_type", b"model", b"anything"):
        body = _multipart([(name, b"\xff\xfe\xc3(")], b"page.png", PAGE)  # a text part, no filename
        async with session.post(f"{live.server.url}/ocr", data=body, headers=headers) as resp:
            await _refused(resp, 400, "utf-8", name.decode())
    await _unchanged(session, live)


async def test_oversized_form_field(live: Live, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{live.server.url}/ocr", data=_form(PAGE, custom_prompt="x" * 200_000)) as resp:
        await _refused(resp, 413, "limit")
    await _unchanged(session, live)


async def test_unknown_route_and_wrong_method(live: Live, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{live.server.url}/no/such/route") as resp:
        await _refused(resp, 404)
    async with session.get(f"{live.server.url}/ocr") as resp:
        await _refused(resp, 405)
    async with session.post(f"{live.server.url}/gpu/offload?model=nope") as resp:
        await _refused(resp, 400, "unknown model")
    await _unchanged(session, live)


async def test_undecodable_filename_still_gets_its_text(live: Live, session: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY.decode()}"}
    body = _multipart([(b"prompt_type", b"ocr")], b"\xff\xfescan\x80.png", PAGE)
    async with session.post(f"{live.server.url}/ocr", data=body, headers=headers) as resp:
        result = await _json_of(resp)
        assert resp.status == 200, result
    assert result["text"] == EXPECTED and result["metadata"]["filename"] == "\ufffd\ufffdscan\ufffd.png", result
    await _unchanged(session, live)


def test_request_id_that_is_not_visible_ascii_is_replaced(live: Live) -> None:
    """A client's X-Request-ID goes into headers, JSON and logs: junk ones get a fresh id instead."""
    form = _multipart([], b"x.png", b"not an image")
    for sent_id in (b"\xff\xfe", "r\u00e9q-\u2603".encode(), b"a b", b"x" * 129):
        status, headers, body = _raw_post(live.server.port, form, {b"X-Request-ID": sent_id})
        assert status == 400 and body["success"] is False, (sent_id, status, body)
        rid = headers["x-request-id"]
        assert rid == body["request_id"] and rid.isascii() and rid.isprintable() and len(rid) <= 128, (sent_id, rid)
        assert rid.encode() != sent_id
    status, headers, body = _raw_post(live.server.port, form, {b"X-Request-ID": b"ok-id_1.2:3"})
    assert status == 400 and headers["x-request-id"] == body["request_id"] == "ok-id_1.2:3"


# -- generated junk -------------------------------------------------------------------------

_NAMES = st.one_of(
    st.sampled_from(["model", "prompt_type", "find_term", "custom_prompt", "grounding", "x"]).map(str.encode),
    st.binary(min_size=1, max_size=20),  # any bytes: quotes, CR/LF, invalid UTF-8...
)
_VALUES = st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=40))
_JUNK = st.one_of(
    st.binary(min_size=0, max_size=4096),
    st.binary(max_size=2048).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
    st.binary(max_size=2048).map(lambda tail: b"\xff\xd8\xff\xe0" + tail),
    st.binary(max_size=2048).map(lambda tail: b"GIF89a" + tail),
    # a real PNG with bytes changed and maybe cut: some still decode (200), the rest are refused
    st.tuples(
        st.lists(st.tuples(st.integers(0, len(SMALL_PNG) - 1), st.integers(0, 255)), min_size=1, max_size=8),
        st.integers(8, len(SMALL_PNG)),
    ).map(lambda m: _mutate(SMALL_PNG, *m)),
)
_BOUNDARY = b"dsocr-fuzz-5e0c1b7d"


def _mutate(data: bytes, changes: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for pos, value in changes:
        out[pos] = value
    return bytes(out[:cut])


def _multipart(fields: list[tuple[bytes, bytes]], filename: bytes, payload: bytes) -> bytes:
    """A multipart body built by hand, so names and values can be any bytes at all."""
    body = b""
    for name, value in fields:
        body += b"--" + _BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n'
        body += value + b"\r\n"
    body += b"--" + _BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
    body += b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--" + _BOUNDARY + b"--\r\n"
    return body


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=_JUNK,
    fields=st.lists(st.tuples(_NAMES, _VALUES), max_size=3),
    filename=st.binary(max_size=30).filter(lambda b: b'"' not in b and b"\r" not in b and b"\n" not in b),
)
def test_generated_junk_gets_4xx_or_a_result(
    live: Live, payload: bytes, fields: list[tuple[bytes, bytes]], filename: bytes
) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY.decode()}"}

    async def go() -> tuple[int, dict]:
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
            data = _multipart(fields, filename, payload)
            async with s.post(f"{live.server.url}/ocr", data=data, headers=headers) as resp:
                body = await _json_of(resp)
                if resp.status != 200:
                    await _refused(resp, resp.status)
            health = await get_json(s, f"{live.server.url}/health")
            assert health["status"] == "healthy"
            return resp.status, body

    status, body = asyncio.run(go())
    assert 400 <= status < 500 or status == 200, (status, body)
    if status == 200:
        assert body["success"] is True and isinstance(body["text"], str), body


async def test_client_gone_mid_upload_is_no_server_error(live: Live, session: aiohttp.ClientSession) -> None:
    """A client that drops the connection half-way through its upload costs nothing and logs no error."""
    head = (f"POST /ocr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500000\r\n"
            f"Content-Type: multipart/form-data; boundary={_BOUNDARY.decode()}\r\n\r\n").encode()  # fmt: skip
    start = _multipart([(b"prompt_type", b"ocr")], b"page.png", PAGE + bytes(400_000))
    for cut in (50, 110, 150_000):  # in a part's headers, in a field's value, deep in the file
        reader, writer = await asyncio.open_connection("127.0.0.1", live.server.port)
        writer.write(head + start[:cut])
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.transport.abort()  # a reset, as a client that dies would leave it
        await asyncio.sleep(0.3)
    await _unchanged(session, live)
    await _good(session, live)
    log = live.server.output()
    assert "Traceback" not in log and "-> 500" not in log, log[-4000:]


# -- a good request at the end --------------------------------------------------------------


async def test_zz_good_request_at_the_end(live: Live, session: aiohttp.ClientSession) -> None:
    await _good(session, live)
    await _unchanged(session, live)


# -- helpers --------------------------------------------------------------------------------


def _jpeg(png: bytes) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR (correct CRC) declares ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _png_chunk(b"IEND", b""))  # fmt: skip


def _raw_post(port: int, body: bytes, extra: dict[bytes, bytes]) -> tuple[int, dict[str, str], dict]:
    """POST ``body`` to /ocr over a bare socket, so headers can hold any bytes at all."""
    import orjson

    head = b"POST /ocr HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"Content-Type: multipart/form-data; boundary=" + _BOUNDARY + b"\r\n"
    head += b"".join(k + b": " + v + b"\r\n" for k, v in extra.items())
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + body)
        answer = b""
        while not _complete(answer) and (data := sock.recv(65536)):
            answer += data
    head_raw, _, body_raw = answer.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), answer[:500]
    return int(lines[0].split()[1]), headers, orjson.loads(body_raw)


def _chunked_upload(port: int, total: int, timeout: float = 60.0) -> tuple[int, dict, int]:
    """POST a multipart file of ``total`` bytes with chunked encoding; stop sending once answered.

    Returns (status, JSON body, bytes of file data sent before the answer came).
    """
    import orjson

    boundary = "dsocrtestboundary"
    head = (f"POST /ocr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    block = b"\x89PNG" + b"\0" * (256 * 1024 - 4)

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n" % len(data) + data + b"\r\n"

    deadline = time.monotonic() + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head + chunk(part))
        sock.setblocking(False)
        pending, sent, answer = b"", 0, b""
        while time.monotonic() < deadline:
            if not pending and sent < total:
                pending = chunk(block)
                sent += len(block)
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 1.0)
            if readable:
                data = sock.recv(65536)
                answer += data
                if not data or b"\r\n\r\n" in answer:
                    break  # answered: send nothing more
            if writable and pending:
                try:
                    pending = pending[sock.send(pending) :]
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        while not _complete(answer):  # the rest of the answer
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    head_raw, _, body_raw = answer.partition(b"\r\n\r\n")
    assert head_raw, "no answer"
    status = int(head_raw.split(b" ", 2)[1])
    headers = head_raw.decode("latin-1").lower()
    if "transfer-encoding: chunked" in headers:
        body_raw = _dechunk(body_raw)
    return status, orjson.loads(body_raw), sent - len(pending)


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.decode("latin-1").lower().split("\r\n"):
        if line.startswith("content-length:"):
            return len(body) >= int(line.split(":", 1)[1])
    return body.endswith(b"0\r\n\r\n")  # chunked: the last chunk came


def _dechunk(raw: bytes) -> bytes:
    out = b""
    while raw:
        size_line, _, rest = raw.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, raw = out + rest[:size], rest[size + 2 :]
    return out
