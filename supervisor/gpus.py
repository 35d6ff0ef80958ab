"""GPU discovery and choice through NVML (nvidia-ml-py). NVML never creates a CUDA context,
so this runs in the supervisor."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger("dsocr.supervisor.gpus")


class NoGpu(RuntimeError):
    """No NVIDIA driver, or no visible GPU."""


@dataclass
class GpuInfo:
    index: int  # NVML (physical) index
    cuda_index: int  # index as CUDA sees it under CUDA_VISIBLE_DEVICES
    name: str
    used_bytes: int
    total_bytes: int
    processes: dict[int, int] = field(default_factory=dict)  # pid -> bytes used

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.used_bytes


def _visible_indices() -> list[int] | None:
    """Physical indices named by CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES, None for all."""
    for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        raw = os.environ.get(var)
        if raw is None or raw.strip() in ("", "all"):
            continue
        if raw.strip() in ("none", "void"):
            return []
        try:
            return [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            log.warning("%s=%s holds UUIDs or names; all GPUs are listed", var, raw)
    return None


def list_gpus() -> list[GpuInfo]:
    """Visible GPUs with their memory use; raises :class:`NoGpu` when NVML is not there."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - a dependency
        raise NoGpu(f"nvidia-ml-py is not installed: {exc}") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NoGpu(f"no NVIDIA driver ({exc})") from None
    try:
        visible = _visible_indices()
        count = pynvml.nvmlDeviceGetCount()
        indices = [i for i in (visible if visible is not None else range(count)) if 0 <= i < count]
        gpus = []
        for cuda_index, index in enumerate(indices):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            procs = {}
            try:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    procs[proc.pid] = int(proc.usedGpuMemory or 0)
            except pynvml.NVMLError:
                pass
            gpus.append(GpuInfo(index, cuda_index, name if isinstance(name, str) else name.decode(),
                                int(mem.used), int(mem.total), procs))  # fmt: skip
        return gpus
    finally:
        pynvml.nvmlShutdown()


def choose_gpu(gpus: list[GpuInfo]) -> GpuInfo | None:
    """The GPU with the least memory used (ties: the most free)."""
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
            return "cpu", None
        return f"cuda:{chosen.cuda_index}", chosen
    index = int(spec.split(":", 1)[1]) if ":" in spec else 0
    match = next((g for g in gpus if g.cuda_index == index), None)
    if match is None:
        raise NoGpu(f"{spec}: only {len(gpus)} GPUs visible")
    return f"cuda:{index}", match


def process_gpu_bytes(pid: int | None) -> int:
    """GPU memory NVML sees for process ``pid`` (CUDA context included); 0 without NVML."""
    if pid is None:
        return 0
    try:
        return sum(g.processes.get(pid, 0) for g in list_gpus())
    except NoGpu:
        return 0
