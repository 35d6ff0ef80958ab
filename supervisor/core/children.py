"""Every child process the service starts, in one registry, so none can outlive its owner unseen.

Engines (current, spawning or being killed), and any other helper process, are added when they
start and removed only once they are reaped. ``/gpu/status`` lists the ones that are neither a
model's current engine nor known to their owner: after a correct run that list is empty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ipc.weights import pid_alive as process_exists


@dataclass
class Child:
    pid: int
    role: str  # "engine", "zygote"...
    model: str | None = None
    started: float = field(default_factory=time.monotonic)


def private_rss_bytes(pid: int) -> int:
    """Private (not shared) resident memory of ``pid``: what killing it would give back."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines()[1:] if b":" in line)
    except OSError:
        return 0
    total = 0
    for key in (b"Private_Clean", b"Private_Dirty"):
        try:
            total += int(fields.get(key, b"0 kB").split()[0]) * 1024
        except (ValueError, IndexError):
            pass
    return total


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie is dead for our purposes: it holds no memory)."""
    if not process_exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class ChildRegistry:
    def __init__(self) -> None:
        self._children: dict[int, Child] = {}

    def add(self, pid: int, role: str, model: str | None = None) -> None:
        self._children[pid] = Child(pid, role, model)

    def remove(self, pid: int | None) -> None:
        if pid is not None:
            self._children.pop(pid, None)

    def __contains__(self, pid: object) -> bool:
        return pid in self._children

    def __len__(self) -> int:
        return len(self._children)

    def all(self) -> list[Child]:
        return list(self._children.values())

    def describe(self, pid: int) -> dict[str, object]:
        child = self._children[pid]
        return {
            "pid": pid,
            "role": child.role,
            "model": child.model,
            "alive": pid_alive(pid),
            "age_s": round(time.monotonic() - child.started, 3),
            "private_rss_bytes": private_rss_bytes(pid),
        }
