"""N dsocr instances behind HAProxy on 127.0.0.1: throughput, p95, and one instance killed mid-run.

    python bench/pool.py [--instances 1 2 3] [--clients 4] [--requests 24] [--json]

For each N it starts N ``dsocr serve --device cpu`` (the embedded model, one engine thread each)
and HAProxy with deploy/pool/haproxy.cfg.template, warms every instance, then:
- steady: a fixed load (``--requests`` pages from ``--clients`` clients) -> pages/s, p50, p95;
- kill (N >= 2): the same load; when a third of it is done one instance gets SIGKILL (its engine
  too), a new one is started in its place (HAProxy's runtime API points the server at it) and the
  load goes on. Reported: requests lost, the requests in flight on the killed instance (HAProxy's
  count at the kill), those HAProxy retried elsewhere, and the seconds until HAProxy marked the
  instance down and until the pool was whole again (every server UP).
Every loop is bounded in count and time; every process is stopped and every segment removed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_load import percentile
from tests.helpers import wait_until
from tests.integration.server import LINES, Server, free_port, render_text

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "pool" / "haproxy.cfg.template"
EXPECTED = "\n".join(LINES)
# one torch thread per instance: N instances use N cores, and nothing fights over them
INSTANCE_ENV = {"DSOCR_ENGINE_THREADS": "1", "OMP_NUM_THREADS": "1"}
INSTANCE_ARGS = ("--idle-timeout", "0", "--log-level", "WARNING")


def render_config(bind: str, servers: dict[str, int], stats_socket: str) -> str:
    lines = "\n".join(f"    server {name} 127.0.0.1:{port}" for name, port in servers.items())
    return Template(TEMPLATE.read_text()).substitute(BIND=bind, SERVERS=lines, STATS_SOCKET=stats_socket)


class HAProxy:
    """``haproxy -db`` (foreground) with a stats socket for the runtime API and its log in a file."""

    def __init__(self, servers: dict[str, int]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dsocr-pool-"))
        self.socket = str(self.dir / "admin.sock")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.dir / "haproxy.cfg"
        config.write_text(render_config(f"127.0.0.1:{self.port}", servers, self.socket))
        self.log_path = self.dir / "haproxy.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        if not wait_until(lambda: self.proc.poll() is not None or os.path.exists(self.socket), 10):
            raise RuntimeError("haproxy did not start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited: {self.log_path.read_text()[-2000:]}")

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.socket)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers from ``show stat``: status (UP, DOWN...), scur (open requests), wretr..."""
        rows = csv.DictReader(self.command("show stat").lstrip("# ").splitlines())
        return {r["svname"]: r for r in rows if r["pxname"] == "dsocr" and r["svname"] not in ("BACKEND", "FRONTEND")}

    def point(self, name: str, port: int) -> None:
        self.command(f"set server dsocr/{name} addr 127.0.0.1 port {port}")

    def log(self) -> dict[str, dict[str, str]]:
        """One entry per request, by the X-Request-ID the client sent."""
        entries = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("rid"):
                entries[fields["rid"]] = fields
        return entries

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Pool:
    """N instances (s1..sN) behind one HAProxy; ``kill`` and ``replace`` one; ``close`` leaves nothing."""

    def __init__(self, n: int, *args: str) -> None:
        self.args = (*INSTANCE_ARGS, *args)
        self.instances: dict[str, Server] = {}
        self.retired: list[Server] = []
        self.haproxy: HAProxy | None = None
        try:
            for i in range(n):
                self.instances[f"s{i + 1}"] = self._start()
            self.haproxy = HAProxy({name: s.port for name, s in self.instances.items()})
            if not self.wait_whole(30):
                raise RuntimeError(f"pool not up: {self.haproxy.servers()}")
        except BaseException:
            self.close()
            raise

    def _start(self) -> Server:
        server = Server(*self.args, env=INSTANCE_ENV)
        try:
            server.wait_ready(60)
        except BaseException:
            server.cleanup()
            raise
        return server

    @property
    def url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def statuses(self) -> dict[str, str]:
        assert self.haproxy is not None
        return {name: row["status"] for name, row in self.haproxy.servers().items()}

    def wait_whole(self, timeout: float) -> bool:
        return wait_until(lambda: all(s == "UP" for s in self.statuses().values()), timeout, 0.05)

    def kill(self, name: str) -> int:
        """SIGKILL the instance and its engine; returns the requests HAProxy had open on it."""
        assert self.haproxy is not None
        server = self.instances[name]
        server.engine_pids()  # remembered, so cleanup can make sure they are gone
        in_flight = int(self.haproxy.servers()[name]["scur"] or 0)
        os.killpg(server.pid, signal.SIGKILL)
        return in_flight

    def replace(self, name: str) -> None:
        """Start a new instance in the killed one's place, as a supervisor (systemd, Kubernetes) would."""
        assert self.haproxy is not None
        self.retired.append(self.instances[name])
        self.instances[name] = self._start()
        self.haproxy.point(name, self.instances[name].port)

    def close(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for server in [*self.instances.values(), *self.retired]:
            server.cleanup()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Outcome:
    rid: str
    status: int | str  # HTTP status, or the name of the client-side error
    started: float
    seconds: float
    served_by: str | None = None
    text_ok: bool = False


@dataclass
class Load:
    """A fixed load: ``total`` requests from ``clients`` clients, each with its own X-Request-ID."""

    url: str
    page: bytes
    clients: int
    total: int
    prefix: str = "r"
    outcomes: list[Outcome] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    mark: int = 0  # ``progress`` is set once this many requests are done

    async def run(self) -> list[Outcome]:
        queue = list(range(self.total))
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, queue) for _ in range(self.clients)))
        return self.outcomes

    async def _client(self, session: aiohttp.ClientSession, queue: list[int]) -> None:
        while queue:
            rid = f"{self.prefix}{queue.pop(0)}"
            form = aiohttp.FormData()
            form.add_field("file", self.page, filename="page.png", content_type="image/png")
            t0 = time.monotonic()
            out = Outcome(rid, "", t0, 0.0)
            try:
                async with session.post(f"{self.url}/ocr", data=form, headers={"X-Request-ID": rid}) as resp:
                    body = await resp.read()
                    out.status, out.served_by = resp.status, resp.headers.get("X-Served-By")
                    out.text_ok = resp.status == 200 and orjson.loads(body).get("text") == EXPECTED
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                out.status = type(exc).__name__
            out.seconds = time.monotonic() - t0
            self.outcomes.append(out)
            if self.mark and len(self.outcomes) >= self.mark:
                self.progress.set()


def summary(outcomes: list[Outcome], wall: float) -> dict[str, Any]:
    ok = [o.seconds for o in outcomes if o.text_ok]
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "pages_per_s": round(len(ok) / wall, 2),
        "p50_s": round(percentile(ok, 50), 3) if ok else None,
        "p95_s": round(percentile(ok, 95), 3) if ok else None,
        "served_by": {s: sum(o.served_by == s for o in outcomes) for s in sorted({o.served_by for o in outcomes if o.served_by})},
    }  # fmt: skip


async def steady(pool: Pool, page: bytes, clients: int, total: int) -> dict[str, Any]:
    t0 = time.monotonic()
    outcomes = await Load(pool.url, page, clients, total, prefix="steady-").run()
    return summary(outcomes, time.monotonic() - t0)


async def with_a_kill(pool: Pool, page: bytes, clients: int, total: int, victim: str = "s1") -> dict[str, Any]:
    """The fixed load; one instance SIGKILLed when a third is done, then replaced."""
    assert pool.haproxy is not None
    load = Load(pool.url, page, clients, total, prefix="kill-", mark=max(1, total // 3))
    t0 = time.monotonic()
    running = asyncio.create_task(load.run())
    await asyncio.wait_for(load.progress.wait(), 300)
    in_flight = pool.kill(victim)
    killed = time.monotonic()
    down = await asyncio.to_thread(wait_until, lambda: pool.statuses()[victim].startswith("DOWN"), 30, 0.02)
    marked_down = time.monotonic() - killed if down else None
    await asyncio.to_thread(pool.replace, victim)
    whole = await asyncio.to_thread(pool.wait_whole, 60)
    until_whole = time.monotonic() - killed if whole else None
    outcomes = await running
    wall = time.monotonic() - t0
    log = pool.haproxy.log()
    failed = [o for o in outcomes if not o.text_ok]
    return {
        **summary(outcomes, wall),
        "killed": victim,
        "in_flight_on_killed": in_flight,
        "lost": len(failed),
        **(
            {"lost_requests": [{"rid": o.rid, "status": o.status, **log.get(o.rid, {})} for o in failed]}
            if failed
            else {}
        ),
        "retried": sum(1 for o in outcomes if int(log.get(o.rid, {}).get("retries", "0").lstrip("+") or 0) > 0),
        "seconds_until_marked_down": round(marked_down, 2) if marked_down is not None else None,
        "seconds_until_whole": round(until_whole, 2) if until_whole is not None else None,
    }


async def warm(pool: Pool, page: bytes) -> None:
    """One request straight to each instance: every model is loaded before the clock starts."""
    async with aiohttp.ClientSession() as session:
        for server in pool.instances.values():
            form = aiohttp.FormData()
            form.add_field("file", page, filename="page.png", content_type="image/png")
            async with session.post(f"{server.url}/ocr", data=form) as resp:
                assert resp.status == 200, await resp.text()


async def bench(n: int, clients: int, total: int) -> dict[str, Any]:
    page = render_text()
    with Pool(n) as pool:
        await warm(pool, page)
        result: dict[str, Any] = {
            "instances": n,
            "clients": clients,
            "steady": await steady(pool, page, clients, total),
        }
        if n >= 2:
            result["kill"] = await with_a_kill(pool, page, clients, total)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [asyncio.run(bench(n, args.clients, args.requests)) for n in args.instances]
    if args.json:
        # one line per N: still one JSON document, and short enough to quote
        rows = ",\n  ".join(orjson.dumps(r).decode() for r in results)
        print(f'{{"cpus": {os.cpu_count()}, "results": [\n  {rows}\n]}}')
        return
    print(f"{'N':>2} {'pages/s':>8} {'p50 s':>7} {'p95 s':>7}  kill: lost / in flight / retried, down s, whole s")
    for r in results:
        s, k = r["steady"], r.get("kill")
        line = f"{r['instances']:>2} {s['pages_per_s']:>8} {s['p50_s']:>7} {s['p95_s']:>7}"
        if k:
            line += (f"  {k['lost']} / {k['in_flight_on_killed']} / {k['retried']}, "
                     f"{k['seconds_until_marked_down']}, {k['seconds_until_whole']}")  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()
