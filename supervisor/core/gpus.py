"""GPU discovery and choice through NVML (nvidia-ml-py). NVML never creates a CUDA context,
so this runs in the supervisor.

Which GPUs count:

- ``CUDA_VISIBLE_DEVICES``, read as CUDA reads it (indices or ``GPU-`` UUID prefixes, an empty
  value hides every GPU, the list ends at the first entry that names no GPU); its order is the
  numbering the engine's CUDA will use.
- ``NVIDIA_VISIBLE_DEVICES`` outside a container, so that ``NVIDIA_VISIBLE_DEVICES=1 ./start_gpu.sh``
  means the same with or without Docker. Inside a container the NVIDIA runtime has already applied
  it (NVML there sees only those GPUs, numbered from 0), so it is not applied a second time.

NVML numbers GPUs in PCI bus order while CUDA puts the fastest first unless told otherwise;
:func:`resolve_device` sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so the index chosen here is the one
the engine opens.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("dsocr.supervisor.gpus")

MiB = 2**20


class NoGpu(RuntimeError):
    """No NVIDIA driver, or no visible GPU."""


@dataclass
class GpuInfo:
    index: int  # NVML (physical) index
    cuda_index: int  # index as the engine's CUDA sees it
    name: str
    used_bytes: int
    total_bytes: int
    processes: dict[int, int] = field(default_factory=dict)  # pid -> bytes used
    uuid: str = ""

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.used_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "cuda_index": self.cuda_index, "name": self.name, "uuid": self.uuid,
            "used_bytes": self.used_bytes, "total_bytes": self.total_bytes, "free_bytes": self.free_bytes,
            "used_mib": self.used_bytes // MiB, "total_mib": self.total_bytes // MiB,
            "processes": [{"pid": pid, "used_bytes": used} for pid, used in sorted(self.processes.items())],
        }  # fmt: skip


# -- which GPUs are visible --------------------------------------------------------------------


@dataclass(frozen=True)
class Visibility:
    """GPU selectors (indices or UUID prefixes) from the environment; ``None``: no restriction."""

    cuda: tuple[str, ...] | None = None  # CUDA_VISIBLE_DEVICES, in CUDA's order
    nvidia: tuple[str, ...] | None = None  # NVIDIA_VISIBLE_DEVICES, applied outside a container

    def select(self, devices: Sequence[tuple[int, str]]) -> list[tuple[int, int]]:
        """``(nvml index, cuda index)`` of the visible GPUs among ``devices`` (``(index, uuid)``)."""
        if self.cuda is None:
            order = [index for index, _ in devices]
        else:
            order = []
            for selector in self.cuda:
                index = _match(selector, devices)
                if index is None or index in order:  # CUDA ignores everything from a bad entry on
                    break
                order.append(index)
        pairs = [(index, cuda_index) for cuda_index, index in enumerate(order)]
        if self.nvidia is not None:
            allowed = {_match(selector, devices) for selector in self.nvidia}
            pairs = [pair for pair in pairs if pair[0] in allowed]
        return pairs


def _match(selector: str, devices: Sequence[tuple[int, str]]) -> int | None:
    """The NVML index ``selector`` names: an index, or a unique prefix of a ``GPU-`` UUID."""
    if selector.isdigit():
        return int(selector) if any(index == int(selector) for index, _ in devices) else None
    wanted = selector.lower()
    if not wanted.startswith("gpu-"):
        wanted = "gpu-" + wanted
    hits = [index for index, uuid in devices if uuid.lower().startswith(wanted)]
    return hits[0] if len(hits) == 1 else None


def _selectors(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(","))


def parse_visibility(env: Mapping[str, str], in_container: bool) -> Visibility:
    """The restrictions that ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` put on the GPUs."""
    cuda = nvidia = None
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is not None:
        cuda = _selectors(raw) if raw.strip() else ()
        if any(s.upper().startswith("MIG-") for s in cuda):
            log.warning("CUDA_VISIBLE_DEVICES=%s names MIG instances; GPU choice ignores it", raw)
            cuda = None
    raw = (env.get("NVIDIA_VISIBLE_DEVICES") or "").strip()
    if not in_container and raw and raw not in ("all", "void"):
        nvidia = () if raw == "none" else _selectors(raw)
        if any(s.upper().startswith("MIG-") for s in nvidia):
            log.warning("NVIDIA_VISIBLE_DEVICES=%s names MIG instances; GPU choice ignores it", raw)
            nvidia = None
    return Visibility(cuda, nvidia)


def in_container(env: Mapping[str, str]) -> bool:
    """Whether a container runtime started us (our image sets DSOCR_IN_CONTAINER=1)."""
    if env.get("DSOCR_IN_CONTAINER"):
        return env["DSOCR_IN_CONTAINER"] not in ("0", "false", "no")
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


# -- NVML ----------------------------------------------------------------------------------------


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


# NVML stays initialized once it was: without persistence mode a fresh init can take a second
# (the driver tears the GPUs' state down when its last client leaves), and /gpu/status asks often.
_nvml_lock = threading.Lock()
_nvml_ready: Any = None  # the pynvml module whose nvmlInit succeeded


def _nvml() -> Any:
    global _nvml_ready
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - a dependency
        raise NoGpu(f"nvidia-ml-py is not installed: {exc}") from None
    with _nvml_lock:
        if _nvml_ready is not pynvml:
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                raise NoGpu(f"no NVIDIA driver ({exc})") from None
            _nvml_ready = pynvml
    return pynvml


def list_gpus(env: Mapping[str, str] | None = None, container: bool | None = None) -> list[GpuInfo]:
    """Visible GPUs with their memory use; raises :class:`NoGpu` when NVML is not there."""
    env = os.environ if env is None else env
    visibility = parse_visibility(env, in_container(env) if container is None else container)
    pynvml = _nvml()
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        devices = [(i, _text(pynvml.nvmlDeviceGetUUID(h))) for i, h in enumerate(handles)]
        gpus = []
        for index, cuda_index in visibility.select(devices):
            handle = handles[index]
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            procs = {}
            try:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    procs[proc.pid] = int(proc.usedGpuMemory or 0)  # None where the driver hides it
            except pynvml.NVMLError:
                pass
            gpus.append(GpuInfo(index, cuda_index, _text(pynvml.nvmlDeviceGetName(handle)), int(mem.used),
                                int(mem.total), procs, devices[index][1]))  # fmt: skip
        return gpus
    except pynvml.NVMLError as exc:  # a GPU fell off the bus, a driver reload...
        raise NoGpu(f"NVML: {exc}") from None


# -- choice --------------------------------------------------------------------------------------


def choose_gpu(gpus: Sequence[GpuInfo]) -> GpuInfo | None:
    """The GPU with the least memory used (ties: the most free, then the lowest index)."""
    if not gpus:
        return None
    return min(gpus, key=lambda g: (g.used_bytes, -g.free_bytes, g.index))


def resolve_device(spec: str) -> tuple[str, GpuInfo | None]:
    """The device string the engine gets for ``spec`` and, for CUDA, the GPU it names.

    ``auto`` picks the least used GPU, or the CPU when there is none.
    """
    if spec == "cpu":
        return "cpu", None
    try:
        gpus = list_gpus()
    except NoGpu as exc:
        if spec == "auto":
            log.info("no GPU (%s): running on the CPU", exc)
            return "cpu", None
        raise
    if spec == "auto":
        chosen = choose_gpu(gpus)
        if chosen is None:
            log.info("no visible GPU: running on the CPU")
            return "cpu", None
    else:
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        chosen = next((g for g in gpus if g.cuda_index == index), None)
        if chosen is None:
            raise NoGpu(f"{spec}: only {len(gpus)} GPUs visible")
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # the engine inherits it: see module doc
    return f"cuda:{chosen.cuda_index}", chosen


def process_gpu_bytes(pid: int | None) -> int:
    """GPU memory NVML sees for process ``pid`` (CUDA context included); 0 without NVML.

    In a container NVML reports host pids, so this is 0 there unless the container shares the
    host's pid namespace.
    """
    if pid is None:
        return 0
    try:
        return sum(g.processes.get(pid, 0) for g in list_gpus())
    except NoGpu:
        return 0


# -- the `dsocr gpus` listing ---------------------------------------------------------------------

SELECTED_MARK = "← 自动选择 (selected)"


def format_gpus(gpus: Sequence[GpuInfo], chosen: GpuInfo | None) -> str:
    """The upstream listing, ``index, name, used MiB, total MiB``, the choice marked, pids below."""
    lines = []
    for g in gpus:
        line = f"{g.index}, {g.name}, {g.used_bytes // MiB} MiB, {g.total_bytes // MiB} MiB"
        lines.append(f"{line}  {SELECTED_MARK}" if g is chosen else line)
        lines.extend(f"    pid {pid}: {used // MiB} MiB" for pid, used in sorted(g.processes.items()))
    return "\n".join(lines)


def wait_gpu_memory_back(pid: int, timeout: float = 10.0, poll: float = 0.05) -> float | None:
    """After killing ``pid``: poll NVML until it lists no memory for it; the seconds that took,
    or None when it still held memory at ``timeout`` (or NVML cannot tell)."""
    t0 = time.monotonic()
    while True:
        try:
            held = sum(g.processes.get(pid, 0) for g in list_gpus())
        except NoGpu:
            return None
        if held == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            return None
        time.sleep(poll)
