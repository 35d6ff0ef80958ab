"""``python -m tests.sim [--seed N | --schedules N --first S]``: run seeded schedules of the core.

A failing seed prints itself with its violations; ``--seed N`` replays it exactly.
"""

from __future__ import annotations

import sys
import time

import click

from tests.sim.harness import run_schedule


@click.command()
@click.option("--seed", type=int, default=None, help="replay one schedule")
@click.option("--schedules", type=int, default=2000, show_default=True)
@click.option("--first", type=int, default=0, show_default=True, help="the first seed")
@click.option("-v", "--verbose", is_flag=True, help="print every schedule's summary")
def main(seed: int | None, schedules: int, first: int, verbose: bool) -> None:
    seeds = [seed] if seed is not None else range(first, first + schedules)
    t0 = time.perf_counter()
    failed = 0
    for s in seeds:
        report = run_schedule(s)
        if verbose or not report.ok:
            print(f"seed {s}: {report.ops} ops, {report.answered} answered, errors {report.errors}, "
                  f"{report.simulated_s:.0f}s simulated")  # fmt: skip
        if not report.ok:
            failed += 1
            for v in report.violations:
                print(f"  VIOLATION {v}")
            print(f"  replay: python -m tests.sim --seed {s}")
    n = len(seeds)
    print(f"{n - failed} passed, {failed} failed schedules in {time.perf_counter() - t0:.1f}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
