"""EngineRuntime in this process, with the synthetic model: every transition, no pipe."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.models.base import BadInput, UnknownModel
from engine.runtime import EngineRuntime, NotLoaded
from ipc.weights import StoreError, list_segments, unlink_segment
from tests.helpers import SegmentGuard, shm, text_png  # noqa: F401  (fixture)

MODEL = "synthetic"
IMAGE = text_png()


@pytest.fixture(scope="module")
def options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """10 MB of random weights, written once for the module."""
    return {"gb": 0.01, "dir": str(tmp_path_factory.mktemp("synthetic"))}


@pytest.fixture
def runtime(shm: SegmentGuard) -> Iterator[EngineRuntime]:
    rt = EngineRuntime()
    yield rt
    rt.close()  # unmap before the guard unlinks and checks


def test_load_infer_offload_restore(runtime: EngineRuntime, shm: SegmentGuard, options: dict[str, Any]) -> None:
    segment = shm.name("rt")
    loaded = runtime.load(MODEL, segment, "cpu", options)
    assert loaded["state"] == "resident" and loaded["device"] == "cpu"
    assert 0 <= loaded["weights_bytes"] - int(0.01 * 2**30) // 4 * 4 < 64  # aligned to 64 bytes
    assert loaded["shared_memory_bytes"] > loaded["weights_bytes"]
    assert loaded["device_bytes"] == 0 and loaded["pinned"] is False  # CPU: views of the segment
    assert [Path(f).name for f in loaded["files"]] == ["synthetic-0.01gb.safetensors"]
    assert segment in list_segments()

    first = runtime.infer(MODEL, IMAGE, {})
    assert first["text"].startswith("synthetic ") and first["image_dims"]["h"] == 96
    assert set(first["timing"]) == {"decode_s", "infer_s", "batch"} and first["timing"]["batch"] == 1
    assert runtime.alive_tensors(MODEL) > 0

    off = runtime.offload(MODEL)
    assert off["state"] == "cached" and off["device_bytes"] == 0
    assert runtime.alive_tensors(MODEL) == 0  # nothing keeps a bound tensor (or the device buffer) alive
    with pytest.raises(NotLoaded):
        runtime.infer(MODEL, IMAGE, {})
    assert runtime.offload(MODEL)["state"] == "cached"  # a second offload is a no-op

    restored = runtime.restore(MODEL, segment, "cpu", options)
    assert restored["state"] == "resident"
    assert runtime.infer(MODEL, IMAGE, {})["text"] == first["text"]
    assert runtime.restore(MODEL, segment, "cpu", options)["seconds"] == 0.0  # already resident
    runtime.close()
    assert unlink_segment(segment)


def test_cpu_tensors_are_views_of_the_segment(runtime: EngineRuntime, shm: SegmentGuard,
                                              options: dict[str, Any]) -> None:  # fmt: skip
    """Zero copy on CPU: every bound parameter points into the mapped segment."""
    segment = shm.name("views")
    runtime.load(MODEL, segment, "cpu", options)
    loaded = runtime.models[MODEL]
    data = np.frombuffer(loaded.store.data_view(), dtype=np.uint8)
    base, end = data.ctypes.data, data.ctypes.data + data.nbytes
    params = list(loaded.module.parameters())  # type: ignore[union-attr]
    assert params and all(base <= t.data_ptr() and t.data_ptr() + t.nbytes <= end for t in params)
    del data, params
    runtime.close()
    unlink_segment(segment)


def test_stats_fields(runtime: EngineRuntime, shm: SegmentGuard, options: dict[str, Any]) -> None:
    assert runtime.stats() == {"pid": os.getpid(), "models": {}, "device_memory": {}, "busy_s": None}
    segment = shm.name("stats")
    runtime.load(MODEL, segment, "cpu", options)
    stats = runtime.stats()
    assert stats["pid"] == os.getpid() and stats["busy_s"] is None
    assert stats["device_memory"] == {}  # CUDA memory only
    model = stats["models"][MODEL]
    assert set(model) >= {"model", "state", "device", "shared_memory_bytes", "weights_bytes", "device_bytes",
                          "pinned", "device_memory"}  # fmt: skip
    assert (model["state"], model["device"]) == ("resident", "cpu")
    runtime.offload(MODEL)
    assert runtime.stats()["models"][MODEL]["state"] == "cached"
    runtime.close()
    assert runtime.stats()["models"] == {}
    unlink_segment(segment)


def test_restore_of_missing_segment_raises(runtime: EngineRuntime, shm: SegmentGuard,
                                           options: dict[str, Any]) -> None:  # fmt: skip
    with pytest.raises(StoreError, match="does not exist"):
        runtime.restore(MODEL, shm.name("missing"), "cpu", options)
    assert MODEL not in runtime.models


def test_errors_before_anything_is_loaded(runtime: EngineRuntime, shm: SegmentGuard,
                                          options: dict[str, Any]) -> None:  # fmt: skip
    with pytest.raises(NotLoaded):
        runtime.infer(MODEL, IMAGE, {})
    with pytest.raises(NotLoaded):
        runtime.offload(MODEL)
    with pytest.raises(UnknownModel):
        runtime.load("no-such-model", shm.name("unknown"), "cpu", {})
    segment = shm.name("bad")
    runtime.load(MODEL, segment, "cpu", options)
    with pytest.raises(BadInput):
        runtime.infer(MODEL, b"not an image", {})
    assert runtime.infer(MODEL, IMAGE, {})["text"].startswith("synthetic ")
    runtime.close()
    unlink_segment(segment)


def test_load_into_an_existing_segment_fails_and_keeps_it(runtime: EngineRuntime, shm: SegmentGuard,
                                                          options: dict[str, Any]) -> None:  # fmt: skip
    segment = shm.name("twice")
    runtime.load(MODEL, segment, "cpu", options)
    with pytest.raises(StoreError, match="already exists"):
        EngineRuntime().load(MODEL, segment, "cpu", options)
    assert segment in list_segments()
    assert runtime.infer(MODEL, IMAGE, {})["text"].startswith("synthetic ")
    runtime.close()
    unlink_segment(segment)


def test_failed_load_leaves_no_segment(runtime: EngineRuntime, shm: SegmentGuard, options: dict[str, Any]) -> None:
    from engine.placement import PlacementError

    segment = shm.name("fail")
    with pytest.raises(PlacementError):
        runtime.load(MODEL, segment, "cuda:0", options)  # no CUDA on this host
    # and when binding fails after the segment was written (after_bind reads this option)
    with pytest.raises(ValueError):
        runtime.load(MODEL, segment, "cpu", {**options, "bind_delay_s": "not a number"})
    assert segment not in list_segments() and MODEL not in runtime.models
