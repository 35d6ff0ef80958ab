"""Supervisor memory under many concurrent large uploads (issue 20: 60 x 20 MB took it to 1.49 GB).

    python bench/upload_memory.py [--clients 60] [--mb 20] [--json-clients 0] [--model ppocr] [--json] [-- SERVE OPTIONS...]

Starts ``dsocr serve`` (CPU, default settings unless options follow ``--``) on a free loopback
port, sends one small image to start the engine, then ``--clients`` uploads of ``--mb`` MB at once
(an uncompressed BMP of a page with a line of text: a legal upload the model reads quickly). It
reports every answer's status (``--json-clients`` more send, at the same time, a JSON body to
``/v1/ocr`` of 48 MB: a 36 MB BMP as a base64 data URL, the other kind of legal upload), the supervisor's VmHWM (its peak resident memory, from
/proc/PID/status) and its VmRSS a few seconds after, and stops the server. Bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def page_bmp(nbytes: int) -> bytes:
    side = int((nbytes / 3) ** 0.5)
    img = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(img).text((40, 40), "Invoice 2041 total 385.20", fill="black", font=ImageFont.load_default(48))
    out = io.BytesIO()
    img.save(out, format="BMP")
    return out.getvalue()


def vm_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def post(session: aiohttp.ClientSession, url: str, data: bytes) -> int:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="page.bmp", content_type="image/bmp")
    try:
        async with session.post(f"{url}/ocr", data=form) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError as exc:  # reported, never hidden: the issue wants every one answered
        return -1 if not isinstance(exc, aiohttp.ServerDisconnectedError) else -2


async def post_json(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    try:
        async with session.post(f"{url}/v1/ocr", data=body, headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return -1


async def run(url: str, pid: int, clients: int, nbytes: int, json_clients: int, timeout: float) -> dict[str, Any]:
    small = page_bmp(200_000)
    big = page_bmp(nbytes)
    data_url = "data:image/bmp;base64," + base64.b64encode(page_bmp(36 * 2**20)).decode() if json_clients else ""
    document = orjson.dumps({"document": {"type": "image_url", "image_url": data_url}})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        assert await post(session, url, small) == 200, "warm-up request failed"
        before_hwm, before_rss = vm_mib(pid, "VmHWM"), vm_mib(pid, "VmRSS")
        t0 = time.perf_counter()
        codes = await asyncio.gather(
            *(post(session, url, big) for _ in range(clients)),
            *(post_json(session, url, document) for _ in range(json_clients)),
        )
        wall = time.perf_counter() - t0
    await asyncio.sleep(3)
    counts: dict[str, int] = {}
    for code in codes:
        counts[str(code)] = counts.get(str(code), 0) + 1
    return {
        "clients": clients,
        "json_clients": json_clients,
        "upload_mb": round(len(big) / 2**20, 1),
        "answers": counts,
        "seconds": round(wall, 2),
        "vmhwm_mib_before": round(before_hwm, 1),
        "vmrss_mib_before": round(before_rss, 1),
        "vmhwm_mib": round(vm_mib(pid, "VmHWM"), 1),
        "vmrss_mib_after": round(vm_mib(pid, "VmRSS"), 1),
    }


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--json-clients", type=int, default=0)
    parser.add_argument("--model", default="ppocr")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    port = free_port()
    cmd = [sys.executable, "-m", "supervisor.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--model", args.model, *extra]  # fmt: skip
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"server exited with {proc.returncode}") from None
                time.sleep(0.1)
        result = asyncio.run(
            run(
                f"http://127.0.0.1:{port}",
                proc.pid,
                args.clients,
                int(args.mb * 2**20),
                args.json_clients,
                args.timeout,
            )
        )
        result["serve_options"] = extra
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
