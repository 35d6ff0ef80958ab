"""Directed schedules for the defects of issue #20, run on the same harness as the random ones.

Each scenario is a driver for :func:`tests.sim.harness.run_schedule`: it scripts the requests
and faults that made v0.2 hang, then checks that every caller got its answer in time. The
random schedules cover the same ground by chance; these pin the known bad orders down.
"""

from __future__ import annotations

import asyncio

from supervisor.core.device_arbiter import DeviceArbiter, enough_room
from supervisor.core.lifecycle import ModelFailed, ModelLifecycle, State
from tests.sim.fakes import Faults
from tests.sim.harness import GIB, Report, Simulation, run_schedule


class DeviceRoomV02(DeviceArbiter):
    """v0.2's device room on today's seams: it holds its lock while it awaits a victim's offload,
    which sits in the victim's queue (kept to show the harness finds the deadlock)."""

    async def acquire(self, owner, needed_bytes):  # type: ignore[no-untyped-def]
        if len(self._owners) < 2:
            return
        async with self._turn:
            residents = [o for o in self._owners.values() if o is not owner and o.state is State.RESIDENT]
            for victim in sorted(residents, key=lambda o: o.last_used):
                free = await self._free_bytes()
                if free is None or enough_room(free, needed_bytes):
                    return
                await victim.offload(f"room for {owner.model}")

    def settle(self, owner):  # type: ignore[no-untyped-def]
        pass

    def give_back(self, owner):  # type: ignore[no-untyped-def]
        pass


class OwnerV02(ModelLifecycle):
    """v0.2's owner loop: a batch for a ``failed`` model raised out of it, and so did the loop."""

    async def _run(self) -> None:
        while True:
            await self._step()

    def _owner_ended(self, task):  # type: ignore[no-untyped-def]
        pass  # nobody restarted it

    async def _batch_outcomes(self, batch):  # type: ignore[no-untyped-def]
        if self.state is State.FAILED:
            raise ModelFailed(self._failed_message())
        return await super()._batch_outcomes(batch)


def _answers_within(sim: Simulation, tasks: list[asyncio.Future], seconds: float, what: str):  # type: ignore[no-untyped-def]
    async def wait() -> None:
        done, pending = await asyncio.wait(tasks, timeout=seconds)
        if pending:
            sim.violation(f"{what}: {len(pending)} of {len(tasks)} callers unanswered after {seconds:.0f}s")
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                sim.report.errors[type(task.exception()).__name__] = 1

    return wait()


async def _close(sim: Simulation) -> None:
    sim.closed = True
    await asyncio.wait_for(asyncio.gather(*(lc.close(grace=2.0) for lc in sim.lifecycles.values())), 60)
    await asyncio.sleep(0.1)
    sim.check()
    sim._check_closed()


def failed_load_with_queued_requests(owner: type[ModelLifecycle] = ModelLifecycle) -> Report:
    """8 requests queued while the 3rd load failure sets ``failed``; then ``release``, then weights
    come back: v0.2's owner died in that batch, its callers and the release waited forever."""
    sim = Simulation(1, owner=owner, models=["alpha"], device="cpu", max_load_failures=3, max_batch=1, queue_size=16,
                     faults=Faults())  # fmt: skip

    async def drive(sim: Simulation) -> None:
        lc = sim.lifecycles["alpha"]
        sim.world.weights_missing.add("alpha")
        lc.start()
        infers = [asyncio.ensure_future(lc.infer(b"img", {})) for _ in range(8)]
        await _answers_within(sim, infers, 60, "8 concurrent requests, no weights")
        if lc.state is not State.FAILED:
            sim.violation(f"alpha is {lc.state.value} after 3 failed loads, not failed")
        release = asyncio.ensure_future(lc.release("operator"))
        await _answers_within(sim, [release], 10, "release of a failed model")
        sim.world.weights_missing.discard("alpha")
        again = asyncio.ensure_future(lc.infer(b"img", {}))
        await _answers_within(sim, [again], 30, "a request after the release")
        if again.done() and not again.cancelled() and again.exception() is not None:
            sim.violation(f"the model did not load again after the release: {again.exception()!r}")
        sim.check()
        await _close(sim)

    return run_schedule(1, sim, drive)


def _two_big_models(arbiter: type[DeviceArbiter], seed: int) -> Simulation:
    return Simulation(seed, arbiter, models=["alpha", "beta"], device="cuda:0", capacity=8 * GIB, external=0,
                      sizes={"alpha": 5 * GIB, "beta": 5 * GIB}, max_batch=1, queue_size=4,
                      faults=Faults(infer_seconds=(1.0, 1.0), memory_return_seconds=(0.3, 0.3)))  # fmt: skip


def room_deadlock_load_after_crash(arbiter: type[DeviceArbiter] = DeviceArbiter) -> Report:
    """Two models that do not fit together, beta resident. alpha gets a request and reads NVML
    with the room held; beta's engine dies and beta is asked to load. v0.2's room then awaited
    beta's offload, queued behind beta's load, which waited for the room: neither moved again."""
    sim = _two_big_models(arbiter, 2)

    async def drive(sim: Simulation) -> None:
        alpha, beta = sim.lifecycles["alpha"], sim.lifecycles["beta"]
        sim.world.device.nvml_seconds = 0.05
        alpha.start()
        beta.start()
        await _answers_within(sim, [asyncio.ensure_future(alpha.load("x"))], 30, "alpha's load")
        await _answers_within(sim, [asyncio.ensure_future(beta.load("x"))], 30, "beta's load")
        engine = next(e for e in sim.world.live_engines() if e.model == "beta" and e.process.is_alive())
        tasks = [asyncio.ensure_future(alpha.infer(b"img", {}))]
        await asyncio.sleep(0.01)  # alpha's owner reads NVML
        engine.process.die(-9)
        tasks.append(asyncio.ensure_future(beta.load("preload")))  # served before alpha's offload
        await _answers_within(sim, tasks, 60, "alpha's request and beta's load")
        await _close(sim)

    return run_schedule(2, sim, drive)


def room_overgrant_after_crash(arbiter: type[DeviceArbiter] = DeviceArbiter) -> Report:
    """beta runs a batch with another request queued when alpha asks for the device and beta's
    engine dies. v0.2's room counted only resident models, so beta was let in while alpha was
    still restoring: an out-of-memory on a device the arbiter should have kept for one."""
    sim = _two_big_models(arbiter, 3)

    async def drive(sim: Simulation) -> None:
        alpha, beta = sim.lifecycles["alpha"], sim.lifecycles["beta"]
        sim.world.device.nvml_seconds = 0.5  # a slow NVML: beta moves on meanwhile
        alpha.start()
        beta.start()
        await _answers_within(sim, [asyncio.ensure_future(alpha.load("x"))], 30, "alpha's load")
        await _answers_within(sim, [asyncio.ensure_future(beta.load("x"))], 30, "beta's load")
        tasks = [asyncio.ensure_future(beta.infer(b"img", {})) for _ in range(2)]  # one runs, one waits
        await asyncio.sleep(0.5)
        tasks.append(asyncio.ensure_future(alpha.infer(b"img", {})))
        engine = next(e for e in sim.world.live_engines() if e.model == "beta" and e.process.is_alive())
        sim.world.loop.call_later(0.02, engine.process.die, -9)  # while alpha's owner reads NVML
        await _answers_within(sim, tasks, 60, "alpha and beta after beta's crash")
        await _close(sim)

    return run_schedule(3, sim, drive)


SCENARIOS = {
    "failed_load_with_queued_requests": failed_load_with_queued_requests,
    "room_deadlock_load_after_crash": room_deadlock_load_after_crash,
    "room_overgrant_after_crash": room_overgrant_after_crash,
}
