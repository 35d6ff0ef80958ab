"""Two real ``dsocr serve`` instances behind HAProxy (deploy/pool/) on 127.0.0.1, one of them lost.

A SIGKILL may cost at most the requests that were in flight on the killed instance (HAProxy
retries those it can elsewhere); a SIGTERM with a drain costs none, because ``/ready`` takes the
instance out of the pool before it stops listening.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time

import pytest

from bench.pool import Load, Pool, warm
from tests.integration.server import render_text

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy missing: `make test` installs Debian's"),
]

PAGE = render_text()


async def test_killing_an_instance_loses_only_what_was_in_flight_on_it() -> None:
    with Pool(2) as pool:
        await warm(pool, PAGE)
        load = Load(pool.url, PAGE, clients=4, total=16, prefix="k", mark=5)
        running = asyncio.create_task(load.run())
        await asyncio.wait_for(load.progress.wait(), 120)
        served_before = {o.served_by for o in load.outcomes}
        in_flight = pool.kill("s1")
        killed_at = time.monotonic()
        outcomes = await asyncio.wait_for(running, 180)

        assert len(outcomes) == 16 and served_before == {"s1", "s2"}  # both took work before the kill
        log = pool.haproxy.log()  # type: ignore[union-attr]
        lost = [o for o in outcomes if not o.text_ok]
        for o in lost:
            # a lost request had been sent before the kill, and not to the instance that survived
            assert o.started < killed_at and log.get(o.rid, {}).get("srv") in (None, "s1"), (o, log.get(o.rid))
        assert len(lost) <= in_flight, (lost, in_flight)
        after = [o for o in outcomes if o.started > killed_at]
        assert after and all(o.text_ok and o.served_by == "s2" for o in after)

        assert pool.statuses()["s1"].startswith("DOWN")
        pool.replace("s1")
        assert pool.wait_whole(30), pool.statuses()


async def test_sigterm_drains_an_instance_without_losing_a_request() -> None:
    with Pool(2, "--drain-seconds", "3") as pool:
        await warm(pool, PAGE)
        load = Load(pool.url, PAGE, clients=4, total=16, prefix="t", mark=5)
        running = asyncio.create_task(load.run())
        await asyncio.wait_for(load.progress.wait(), 120)
        victim = pool.instances["s1"]
        victim.proc.send_signal(signal.SIGTERM)
        # /ready's 503 takes s1 out while it still listens: HAProxy marks it down before it exits
        marked_down = await asyncio.to_thread(pool.statuses)
        for _ in range(100):  # bounded: 100 x 50 ms
            if marked_down["s1"].startswith("DOWN") or victim.proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
            marked_down = await asyncio.to_thread(pool.statuses)
        assert marked_down["s1"].startswith("DOWN") and victim.proc.poll() is None, marked_down
        down_at = time.monotonic()
        outcomes = await asyncio.wait_for(running, 180)
        assert all(o.text_ok for o in outcomes), [o for o in outcomes if not o.text_ok]
        assert all(o.served_by == "s2" for o in outcomes if o.started > down_at)
        assert victim.proc.wait(30) == 0
