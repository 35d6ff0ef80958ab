"""Several models on one GPU: before a model becomes resident, offload others if it needs room.

Room is measured, not guessed: NVML's free memory on the GPU against the bytes the model will
take (its segment's size when cached; unknown before its first load, when every other model
is offloaded). The least recently used resident model goes first. On the CPU the weights are
views of shared memory, so there is always room.

Lock order: the requester holds its own lock, then takes the device lock, then each victim's
lock through ``offload``. A victim is always ``resident``, and a resident model never waits
for the device lock, so no cycle can form.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.lifecycle import ModelLifecycle, State

log = logging.getLogger("dsocr.supervisor.room")

# activations, the CUDA context and the allocator's slack on top of the weights
HEADROOM_BYTES = 1 << 30
HEADROOM_FACTOR = 1.2


@dataclass(frozen=True)
class Resident:
    name: str
    last_used: float


def enough_room(free_bytes: int, needed_bytes: int | None) -> bool:
    return needed_bytes is not None and free_bytes >= needed_bytes * HEADROOM_FACTOR + HEADROOM_BYTES


def victims_in_order(residents: list[Resident]) -> list[str]:
    """Least recently used first."""
    return [r.name for r in sorted(residents, key=lambda r: r.last_used)]


class DeviceRoom:
    def __init__(self, lifecycles: dict[str, ModelLifecycle], free_bytes: Callable[[], int | None]) -> None:
        self._lifecycles = lifecycles
        self._free_bytes = free_bytes  # NVML free memory of the service's GPU; None on the CPU
        self._lock = asyncio.Lock()

    async def make_room(self, requester: ModelLifecycle, needed_bytes: int | None) -> None:
        if len(self._lifecycles) < 2 or self._free_bytes() is None:
            return
        async with self._lock:
            residents = [Resident(lc.model, lc.last_used) for lc in self._lifecycles.values()
                         if lc is not requester and lc.state is State.RESIDENT]  # fmt: skip
            for name in victims_in_order(residents):
                free = await asyncio.to_thread(self._free_bytes)
                if free is None or enough_room(free, needed_bytes):
                    return
                log.info("offloading %s to make room for %s (%.0f MiB free)", name, requester.model,
                         free / 2**20)  # fmt: skip
                await self._lifecycles[name].offload(f"room for {requester.model}")
