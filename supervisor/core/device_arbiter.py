"""Several models on one GPU: one arbiter decides who may become resident, and offloads others.

Residency is a *lease*. An owner asks ``acquire(owner, needed_bytes)`` before it loads or restores;
it holds the lease while it loads, restores, is resident or offloads, and gives it back
(``give_back``, called synchronously from the owner's state change) once it is cached, unloaded or
failed. An owner that asks holds no lease (it is not resident), and the arbiter only ever waits
for lease holders, which never wait for the arbiter: no two owners can wait on each other. v0.2's
device-room lock could deadlock exactly there (issue #20: A held the room and awaited B's offload
while B waited for the room); ``tests/sim`` checks this under thousands of schedules.

To make room the arbiter sends the least recently used holder an offload command, without holding
anything the holder could need, and waits for a lease to come back (or polls NVML again: memory
comes back a little after an offload). Decisions are made one at a time (``_turn``), and a grant
waits until every earlier grant has settled (its owner resident or gone), so two loads never count
the same free memory. Room is measured, not guessed: NVML's free memory against the bytes the model
will take (its segment's size when cached; unknown before its first load, when every other model
is offloaded). When nothing is left to offload it grants anyway: the load says whether it fits.
On the CPU (``free_bytes`` gives None) weights are views of shared memory: there is always room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("dsocr.supervisor.arbiter")

# activations, the CUDA context and the allocator's slack on top of the weights
HEADROOM_BYTES = 1 << 30
HEADROOM_FACTOR = 1.2
POLL_S = 0.5  # re-measure NVML this often while waiting for room


class Owner(Protocol):
    """What the arbiter needs of a model's owner (``ModelLifecycle``)."""

    model: str
    last_used: float

    async def offload(self, reason: str = ...) -> bool: ...


@dataclass
class Lease:
    model: str
    settled: bool = False  # the owner is resident (its bytes show in NVML), or gave the lease back


class LeaseError(RuntimeError):
    """An owner asked for a lease while holding one: the design's one rule, broken."""


def enough_room(free_bytes: int, needed_bytes: int | None) -> bool:
    return needed_bytes is not None and free_bytes >= needed_bytes * HEADROOM_FACTOR + HEADROOM_BYTES


def least_recently_used(owners: list[Owner]) -> list[Owner]:
    return sorted(owners, key=lambda o: o.last_used)


class DeviceArbiter:
    def __init__(self, owners: dict[str, Owner], free_bytes: Callable[[], Awaitable[int | None]]) -> None:
        self._owners = owners
        self._free_bytes = free_bytes  # NVML free memory of the service's GPU; None on the CPU
        self._leases: dict[str, Lease] = {}
        self._turn = asyncio.Lock()
        self._changed = asyncio.Event()
        self._asked: dict[str, asyncio.Task[bool]] = {}  # offloads sent, by victim
        self.offloads_for_room = 0

    def holders(self) -> list[str]:
        return list(self._leases)

    async def acquire(self, owner: Owner, needed_bytes: int | None) -> None:
        """Return once ``owner`` may become resident (offloading others first where needed)."""
        if owner.model in self._leases:
            raise LeaseError(f"{owner.model} asked for the device while holding it")
        if len(self._owners) > 1:
            async with self._turn:
                await self._make_room(owner, needed_bytes)
                self._leases[owner.model] = Lease(owner.model)
        else:
            self._leases[owner.model] = Lease(owner.model)

    def settle(self, owner: Owner) -> None:
        """``owner`` is resident: its bytes now show in NVML."""
        if (lease := self._leases.get(owner.model)) is not None:
            lease.settled = True
            self._changed.set()

    def give_back(self, owner: Owner) -> None:
        """``owner`` holds nothing on the device any more (cached, unloaded or failed)."""
        if self._leases.pop(owner.model, None) is not None:
            self._changed.set()

    async def _make_room(self, owner: Owner, needed_bytes: int | None) -> None:
        while True:
            self._changed.clear()
            others = [lease for lease in self._leases.values() if lease.model != owner.model]
            if all(lease.settled for lease in others):
                free = await self._free_bytes()
                if free is None or enough_room(free, needed_bytes):
                    return
                victims = least_recently_used([self._owners[lease.model] for lease in others])
                if not victims:
                    return  # nothing left to offload: the load says whether it fits
                self._ask_offload(victims[0], owner, free)
            try:  # a lease settled or came back, or NVML may say more now
                await asyncio.wait_for(self._changed.wait(), POLL_S)
            except asyncio.TimeoutError:
                pass

    def _ask_offload(self, victim: Owner, owner: Owner, free: int) -> None:
        if (task := self._asked.get(victim.model)) is not None and not task.done():
            return
        log.info("offloading %s to make room for %s (%.0f MiB free)", victim.model, owner.model, free / 2**20)
        self.offloads_for_room += 1
        task = asyncio.ensure_future(victim.offload(f"room for {owner.model}"))
        self._asked[victim.model] = task
        task.add_done_callback(self._offload_done)

    def _offload_done(self, task: asyncio.Task[bool]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.info("offload for room did not run: %s", exc)  # closing, or the owner's own error
        self._changed.set()
