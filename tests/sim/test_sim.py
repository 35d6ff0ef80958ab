"""The supervisor's core under seeded schedules with faults (see tests/sim/harness.py).

CI runs ``SCHEDULES`` random schedules and every directed scenario; ``python -m tests.sim
--schedules N`` runs more, ``--seed N`` replays one.
"""

from __future__ import annotations

import os

import pytest

from tests.sim import scenarios
from tests.sim.harness import run_schedule

SCHEDULES = int(os.environ.get("DSOCR_SIM_SCHEDULES", "2000"))
CHUNKS = 8


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_schedules_keep_every_invariant(chunk: int) -> None:
    failures = []
    for seed in range(chunk, SCHEDULES, CHUNKS):
        report = run_schedule(seed)
        if not report.ok:
            failures.append(
                f"seed {seed} (replay: python -m tests.sim --seed {seed}):\n  " + "\n  ".join(report.violations)
            )
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_directed_scenario_holds(name: str) -> None:
    report = scenarios.SCENARIOS[name]()
    assert report.ok, report.violations


def test_the_harness_finds_v02_owner_death() -> None:
    # v0.2's owner loop ended in the batch after the model became failed: callers and release hang
    report = scenarios.failed_load_with_queued_requests(scenarios.OwnerV02)
    assert any("unanswered" in v for v in report.violations), report.violations


def test_the_harness_finds_v02_device_room_deadlock() -> None:
    # the same schedule against v0.2's room (its lock held across a victim's offload) hangs
    report = scenarios.room_deadlock_load_after_crash(scenarios.DeviceRoomV02)
    assert any("unanswered" in v for v in report.violations), report.violations


def test_the_harness_finds_v02_device_room_overgrant() -> None:
    report = scenarios.room_overgrant_after_crash(scenarios.DeviceRoomV02)
    assert any("out of memory while another model held the device" in v for v in report.violations), report.violations


def test_a_seed_replays_exactly() -> None:
    first, second = run_schedule(1234), run_schedule(1234)
    assert (first.ops, first.answered, first.errors, first.simulated_s) == (
        second.ops,
        second.answered,
        second.errors,
        second.simulated_s,
    )
