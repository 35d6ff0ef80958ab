"""GPU choice and visibility without a GPU: GpuInfo lists, and a fake ``pynvml`` at the NVML boundary."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest
from click.testing import CliRunner

from supervisor.cli.common import NO_GPU_EXIT
from supervisor.cli.main import main
from supervisor.core import gpus
from supervisor.core.gpus import GpuInfo, Visibility, choose_gpu, format_gpus, list_gpus, parse_visibility

MiB = 2**20
UUIDS = ["GPU-1a2b3c4d-0000-0000-0000-000000000000", "GPU-5e6f7a8b-0000-0000-0000-000000000000",
         "GPU-9c0d1e2f-0000-0000-0000-000000000000"]  # fmt: skip


def gpu(index: int, used_mib: int, total_mib: int = 46068, **kw: object) -> GpuInfo:
    return GpuInfo(index, index, "NVIDIA L40S", used_mib * MiB, total_mib * MiB, **kw)  # type: ignore[arg-type]


# -- the choice ---------------------------------------------------------------------------------


def test_choice_is_the_least_used_gpu() -> None:
    listed = [gpu(0, 22331), gpu(1, 433), gpu(2, 3), gpu(3, 17)]
    assert choose_gpu(listed) is listed[2]


def test_choice_ties_go_to_the_most_free_then_the_lowest_index() -> None:
    small, big = gpu(0, 100, total_mib=24000), gpu(1, 100, total_mib=80000)
    assert choose_gpu([small, big]) is big
    first, second = gpu(0, 5), gpu(1, 5)
    assert choose_gpu([second, first]) is first


def test_no_gpus_no_choice() -> None:
    assert choose_gpu([]) is None


def test_listing_has_the_upstream_format_and_marks_the_choice() -> None:
    listed = [gpu(0, 22331), gpu(1, 3, processes={4182: 700 * MiB})]
    text = format_gpus(listed, listed[1])
    assert text.splitlines() == [
        "0, NVIDIA L40S, 22331 MiB, 46068 MiB",
        "1, NVIDIA L40S, 3 MiB, 46068 MiB  ← 自动选择 (selected)",
        "    pid 4182: 700 MiB",
    ]


# -- visibility ----------------------------------------------------------------------------------

DEVICES = list(enumerate(UUIDS))


def visible(env: dict[str, str], container: bool = False) -> list[tuple[int, int]]:
    return parse_visibility(env, container).select(DEVICES)


def test_no_variables_every_gpu_with_its_own_index() -> None:
    assert visible({}) == [(0, 0), (1, 1), (2, 2)]
    assert visible({"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VISIBLE_DEVICES": "0,1,2"}) == [(0, 0), (1, 1), (2, 2)]


def test_cuda_visible_devices_orders_and_renumbers() -> None:
    assert visible({"CUDA_VISIBLE_DEVICES": "2,0"}) == [(2, 0), (0, 1)]
    assert visible({"CUDA_VISIBLE_DEVICES": " 1 "}) == [(1, 0)]


def test_cuda_visible_devices_follows_cudas_rules() -> None:
    assert visible({"CUDA_VISIBLE_DEVICES": ""}) == []  # empty hides every GPU
    assert visible({"CUDA_VISIBLE_DEVICES": "1,-1,0"}) == [(1, 0)]  # stops at the first bad entry
    assert visible({"CUDA_VISIBLE_DEVICES": "0,7"}) == [(0, 0)]
    assert visible({"CUDA_VISIBLE_DEVICES": "1,1"}) == [(1, 0)]


def test_uuids_and_unique_uuid_prefixes_select_gpus() -> None:
    assert visible({"CUDA_VISIBLE_DEVICES": f"{UUIDS[2]},GPU-1a2b"}) == [(2, 0), (0, 1)]
    assert visible({"NVIDIA_VISIBLE_DEVICES": "5e6f"}) == [(1, 1)]
    assert visible({"CUDA_VISIBLE_DEVICES": "GPU-"}) == []  # ambiguous prefix names nothing


def test_nvidia_visible_devices_outside_a_container_keeps_physical_indices() -> None:
    # CUDA still sees every GPU, so GPU 1 stays cuda:1 for the engine
    assert visible({"NVIDIA_VISIBLE_DEVICES": "1"}) == [(1, 1)]
    assert visible({"NVIDIA_VISIBLE_DEVICES": "0,2"}) == [(0, 0), (2, 2)]
    assert visible({"NVIDIA_VISIBLE_DEVICES": "none"}) == []
    assert visible({"NVIDIA_VISIBLE_DEVICES": "void"}) == [(0, 0), (1, 1), (2, 2)]


def test_both_variables_intersect_in_cuda_order() -> None:
    assert visible({"CUDA_VISIBLE_DEVICES": "2,0", "NVIDIA_VISIBLE_DEVICES": "0"}) == [(0, 1)]


def test_inside_a_container_the_runtime_already_applied_nvidia_visible_devices() -> None:
    # the runtime maps host GPU 2 as the container's only GPU, index 0
    assert parse_visibility({"NVIDIA_VISIBLE_DEVICES": "2"}, True) == Visibility(None, None)
    assert parse_visibility({"NVIDIA_VISIBLE_DEVICES": "2", "CUDA_VISIBLE_DEVICES": "0"}, True) == Visibility(("0",))


def test_mig_selectors_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert visible({"CUDA_VISIBLE_DEVICES": "MIG-abc"}) == [(0, 0), (1, 1), (2, 2)]
    assert "MIG" in caplog.text


def test_container_detection_prefers_the_images_variable() -> None:
    assert gpus.in_container({"DSOCR_IN_CONTAINER": "1"}) is True
    assert gpus.in_container({"DSOCR_IN_CONTAINER": "0"}) is False


# -- NVML boundary: a fake pynvml module ----------------------------------------------------------


class FakeNVMLError(Exception):
    pass


@dataclass
class Memory:
    used: int
    total: int


@dataclass
class Proc:
    pid: int
    usedGpuMemory: int | None


Device = tuple[str, int, int, "list[Proc] | None"]  # name, used MiB, total MiB, processes (None: hidden)


class FakeNVML(types.ModuleType):
    """A ``pynvml`` module with ``devices``; ``None``: no driver. Counts init/shutdown pairs."""

    NVMLError = FakeNVMLError

    def __init__(self, devices: list[Device] | None) -> None:
        super().__init__("pynvml")
        self.devices = devices
        self.inits = 0

    def nvmlInit(self) -> None:
        if self.devices is None:
            raise FakeNVMLError("NVML Shared Library Not Found")
        self.inits += 1

    def _device(self, i: int) -> Device:
        assert self.devices is not None and self.inits > 0, "NVML used outside init/shutdown"
        return self.devices[i]

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices or [])

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, i: int) -> bytes:
        return UUIDS[i].encode()  # older bindings answer bytes

    def nvmlDeviceGetName(self, i: int) -> str:
        return self._device(i)[0]

    def nvmlDeviceGetMemoryInfo(self, i: int) -> Memory:
        return Memory(self._device(i)[1] * MiB, self._device(i)[2] * MiB)

    def nvmlDeviceGetComputeRunningProcesses(self, i: int) -> list[Proc]:
        procs = self._device(i)[3]
        if procs is None:
            raise FakeNVMLError("Not Supported")
        return procs


Install = Callable[["list[Device] | None"], FakeNVML]


THREE: list[Device] = [
    ("NVIDIA L40S", 22331, 46068, [Proc(4182, 700 * MiB), Proc(99, None)]),
    ("NVIDIA L40S", 433, 46068, None),
    ("NVIDIA L40S", 3, 46068, []),
]


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Install:
    def install(devices: list[Device] | None) -> FakeNVML:
        mod = FakeNVML(devices)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return mod

    for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.setenv(var, "")  # recorded, so that what resolve_device sets is undone too
        monkeypatch.delenv(var)
    monkeypatch.setenv("DSOCR_IN_CONTAINER", "0")
    return install


def test_list_gpus_reads_memory_and_processes_and_initializes_nvml_once(nvml: Install) -> None:
    mod = nvml(THREE)
    list_gpus()
    listed = list_gpus()
    assert [(g.index, g.cuda_index, g.used_bytes // MiB) for g in listed] == [(0, 0, 22331), (1, 1, 433), (2, 2, 3)]
    assert listed[0].processes == {4182: 700 * MiB, 99: 0}
    assert listed[1].processes == {}  # the driver would not say
    assert listed[2].uuid == UUIDS[2] and listed[2].name == "NVIDIA L40S"
    assert mod.inits == 1


def test_list_gpus_honours_visible_devices(nvml: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml(THREE)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert [(g.index, g.cuda_index) for g in list_gpus()] == [(1, 0), (0, 1)]


def test_without_a_driver_no_gpu_and_auto_means_cpu(nvml: Install) -> None:
    nvml(None)
    with pytest.raises(gpus.NoGpu, match="no NVIDIA driver"):
        list_gpus()
    assert gpus.resolve_device("auto") == ("cpu", None)
    with pytest.raises(gpus.NoGpu):
        gpus.resolve_device("cuda:0")
    assert gpus.process_gpu_bytes(1234) == 0


def test_auto_picks_the_least_used_visible_gpu_in_pci_order(nvml: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml(THREE)
    device, chosen = gpus.resolve_device("auto")
    assert device == "cuda:2" and chosen is not None and chosen.index == 2
    assert gpus.os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "0,1")
    assert gpus.resolve_device("auto")[0] == "cuda:1"
    assert gpus.resolve_device("cuda:0")[1].index == 0  # type: ignore[union-attr]
    with pytest.raises(gpus.NoGpu, match="cuda:2"):
        gpus.resolve_device("cuda:2")
    assert gpus.resolve_device("cpu") == ("cpu", None)


def test_process_gpu_bytes_sums_what_nvml_sees_for_a_pid(nvml: Install) -> None:
    nvml(THREE)
    assert gpus.process_gpu_bytes(4182) == 700 * MiB
    assert gpus.process_gpu_bytes(5) == 0 and gpus.process_gpu_bytes(None) == 0


# -- `dsocr gpus` ---------------------------------------------------------------------------------


def test_cli_lists_gpus_and_marks_the_choice(nvml: Install) -> None:
    nvml(THREE)
    out = CliRunner().invoke(main, ["gpus"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "0, NVIDIA L40S, 22331 MiB, 46068 MiB"
    assert lines[-1] == "2, NVIDIA L40S, 3 MiB, 46068 MiB  ← 自动选择 (selected)"


def test_cli_json_for_scripts(nvml: Install) -> None:
    nvml(THREE)
    out = CliRunner().invoke(main, ["gpus", "--json"])
    body = orjson.loads(out.output)
    assert out.exit_code == 0 and body["selected"] == 2 and body["device"] == "cuda:2" and body["error"] is None
    assert [g["selected"] for g in body["gpus"]] == [False, False, True]
    assert body["gpus"][0]["processes"] == [{"pid": 99, "used_bytes": 0}, {"pid": 4182, "used_bytes": 700 * MiB}]


def test_cli_says_plainly_when_there_is_no_driver(nvml: Install) -> None:
    nvml(None)
    out = CliRunner().invoke(main, ["gpus"])
    assert out.exit_code == NO_GPU_EXIT == 3
    assert out.output.startswith("No NVIDIA GPU: no NVIDIA driver") and "CPU" in out.output
    out = CliRunner().invoke(main, ["gpus", "--json"])
    assert out.exit_code == 3 and orjson.loads(out.output)["device"] == "cpu"


def test_cli_no_visible_gpu(nvml: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml(THREE)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = CliRunner().invoke(main, ["gpus"])
    assert out.exit_code == 3 and "no visible NVIDIA GPU" in out.output


def test_wait_gpu_memory_back_polls_until_nvml_lists_nothing_for_the_pid(nvml: Install) -> None:
    engine = Proc(4182, 700 * MiB)
    mod = nvml([("NVIDIA L40S", 22331, 46068, [engine])])
    calls = 0

    def freed_after_three_polls(i: int) -> list[Proc]:
        nonlocal calls
        calls += 1
        return [engine] if calls < 3 else []

    mod.nvmlDeviceGetComputeRunningProcesses = freed_after_three_polls  # type: ignore[method-assign]
    seconds = gpus.wait_gpu_memory_back(4182, timeout=5, poll=0.01)
    assert seconds is not None and calls == 3


def test_wait_gpu_memory_back_gives_up_at_its_timeout(nvml: Install) -> None:
    nvml([("NVIDIA L40S", 22331, 46068, [Proc(4182, 700 * MiB)])])
    assert gpus.wait_gpu_memory_back(4182, timeout=0.05, poll=0.01) is None
    nvml(None)  # no driver: nothing to wait for, and nothing known
    assert gpus.wait_gpu_memory_back(4182, timeout=0.05, poll=0.01) is None
