"""The shared-memory weight store, across real processes."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from ipc.weights import (
    PAGE,
    TENSOR_ALIGN,
    StoreError,
    WeightStore,
    list_segments,
    owner_pid,
    remove_orphans,
    segment_name,
    unlink_segment,
)
from tests.helpers import ROOT, SegmentGuard, child_env, shm  # noqa: F401  (fixture)


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Python in a fresh process (not a fork: nothing of ours is inherited but the environment)."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=child_env())  # fmt: skip


def digests(store: WeightStore) -> dict[str, str]:
    return {e.name: hashlib.sha256(store.tensor_view(e)).hexdigest() for e in store.entries}


CHILD_DIGESTS = """
import hashlib, json, sys
from ipc.weights import WeightStore
store = WeightStore.attach(sys.argv[1])
print(json.dumps({e.name: hashlib.sha256(store.tensor_view(e)).hexdigest() for e in store.entries}))
"""


def mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 5, generator=g),  # 60 bytes: the next tensor needs padding
        "b.bf16": torch.randn(7, 3, generator=g).to(torch.bfloat16),
        "c.half": torch.randn(11, generator=g).half(),
        "d.index": torch.arange(9, dtype=torch.int64).reshape(3, 3),
        "e.mask": torch.tensor([True, False, True]),
        "f.scalar": torch.tensor(2.5),
        "g.bytes": torch.arange(5, dtype=torch.uint8),
    }


def test_from_arrays_layout_and_manifest(shm: SegmentGuard) -> None:
    arrays = [
        ("x", "F32", (2, 3), np.arange(6, dtype=np.float32)),
        ("y", "U8", (5,), bytes(range(5))),
        ("z", "I64", (), np.array(7, dtype=np.int64)),
    ]
    store = WeightStore.from_arrays(shm.name("arrays"), arrays, metadata={"format": "pt"})
    try:
        assert [(e.name, e.dtype, e.shape, e.nbytes) for e in store.entries] == [
            ("x", "F32", (2, 3), 24), ("y", "U8", (5,), 5), ("z", "I64", (), 8),
        ]  # fmt: skip
        assert all(e.offset % TENSOR_ALIGN == 0 for e in store.entries)
        assert store.data_offset % PAGE == 0
        assert store.metadata == {"format": "pt"}
        assert bytes(store.tensor_view(store.entries[1])) == bytes(range(5))
        assert np.frombuffer(bytes(store.tensor_view(store.entries[0])), np.float32).tolist() == list(range(6))
    finally:
        store.close()
        assert unlink_segment(store.name)


def test_from_arrays_refuses_wrong_sizes_and_leaves_nothing(shm: SegmentGuard) -> None:
    name = shm.name("wrong")
    with pytest.raises(StoreError, match="bytes"):
        WeightStore.from_arrays(name, [("x", "F32", (4,), b"\x00" * 15)])
    assert name not in list_segments()
    with pytest.raises(StoreError, match="dtype"):
        WeightStore.from_arrays(name, [("x", "C64", (1,), b"\x00" * 8)])
    assert name not in list_segments()


def test_safetensors_segment_read_from_another_process(shm: SegmentGuard, tmp_path: Path) -> None:
    tensors = mixed_tensors()
    part1 = {k: v for k, v in tensors.items() if k < "d"}
    part2 = {k: v for k, v in tensors.items() if k >= "d"}
    save_torch(part1, str(tmp_path / "1.safetensors"), metadata={"origin": "test"})
    save_torch(part2, str(tmp_path / "2.safetensors"))
    name = shm.name("st")
    store = WeightStore.from_safetensors(name, [tmp_path / "1.safetensors", tmp_path / "2.safetensors"])
    try:
        by_name = {e.name: e for e in store.entries}
        assert set(by_name) == set(tensors)
        assert by_name["b.bf16"].dtype == "BF16" and by_name["b.bf16"].shape == (7, 3)
        assert by_name["c.half"].dtype == "F16" and by_name["d.index"].dtype == "I64"
        assert by_name["e.mask"].dtype == "BOOL" and by_name["f.scalar"].shape == ()
        assert all(e.offset % TENSOR_ALIGN == 0 for e in store.entries)
        assert store.data_offset % PAGE == 0 and store.metadata == {"origin": "test"}
        # the exact bytes torch holds, tensor by tensor
        expected = {k: hashlib.sha256(v.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
                    for k, v in tensors.items()}  # fmt: skip
        assert digests(store) == expected
        child = run_child(CHILD_DIGESTS, name)
        assert child.returncode == 0, child.stderr
        assert json.loads(child.stdout) == expected
    finally:
        store.close()
        unlink_segment(name)


def test_numpy_safetensors_round_trip(shm: SegmentGuard, tmp_path: Path) -> None:
    arrays = {"w": np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 100), "i": np.arange(3, dtype=np.int32)}
    save_numpy(arrays, str(tmp_path / "m.safetensors"))
    store = WeightStore.from_safetensors(shm.name("np"), [tmp_path / "m.safetensors"])
    try:
        for e in store.entries:
            got = np.frombuffer(bytes(store.tensor_view(e)), dtype=arrays[e.name].dtype).reshape(e.shape)
            np.testing.assert_array_equal(got, arrays[e.name])
    finally:
        store.close()
        unlink_segment(store.name)


def test_read_only_attach_cannot_write(shm: SegmentGuard) -> None:
    name = shm.name("ro")
    WeightStore.from_arrays(name, [("x", "U8", (8,), bytes(8))]).close()
    store = WeightStore.attach(name)
    try:
        assert not store.writable
        view = store.tensor_view(store.entries[0])
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1
        with pytest.raises(TypeError):
            store.data_view()[:] = b"\x01" * store.data_bytes
        del view
    finally:
        store.close()
        unlink_segment(name)


def test_unsealed_segment_refuses_attach(shm: SegmentGuard) -> None:
    name = shm.name("unsealed")
    writer = WeightStore.create(name, [("x", "F32", (4,))])  # a writer that "died" before seal()
    try:
        with pytest.raises(StoreError, match="incomplete"):
            WeightStore.attach(name)
        writer.seal()
        WeightStore.attach(name).close()
    finally:
        writer.close()
        unlink_segment(name)


def test_create_refuses_an_existing_name_and_unlink(shm: SegmentGuard) -> None:
    name = shm.name("dup")
    WeightStore.from_arrays(name, [("x", "U8", (1,), b"\x07")]).close()
    with pytest.raises(StoreError, match="already exists"):
        WeightStore.create(name, [("x", "U8", (1,))])
    assert WeightStore.attach(name).entries[0].nbytes == 1  # the refused create did not remove it
    assert unlink_segment(name) is True
    assert unlink_segment(name) is False
    assert name not in list_segments()
    with pytest.raises(StoreError, match="does not exist"):
        WeightStore.attach(name)


def test_segment_names_carry_their_owner() -> None:
    name = segment_name(1234, "deepseek/ocr 2")
    assert "/" not in name and " " not in name
    assert owner_pid(name) == 1234
    assert owner_pid("dsocr_x_model") is None and owner_pid("other_1_model") is None


def test_remove_orphans_removes_dead_owners_only(shm: SegmentGuard) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    dead_pid = int(child.stdout)  # reaped by run(): that pid runs nothing now
    dead = shm.track(segment_name(dead_pid, f"t-orphan-{os.getpid()}"))
    live = shm.name("live")
    for name in (dead, live):
        WeightStore.from_arrays(name, [("x", "U8", (1,), b"\x01")]).close()
    remove_orphans()  # another session may sweep the same orphan at the same time: check names
    try:
        assert dead not in list_segments()
        assert live in list_segments()
    finally:
        unlink_segment(live)


def test_attaching_process_exit_keeps_segment_and_is_silent(shm: SegmentGuard) -> None:
    """multiprocessing.shared_memory would unlink the segment (or warn of a leak) at the child's exit."""
    name = shm.name("attach")
    WeightStore.from_arrays(name, [("x", "U8", (3,), b"abc")]).close()
    try:
        child = run_child(CHILD_DIGESTS + "store.close()\n", name)
        assert child.returncode == 0, child.stderr
        assert child.stderr == ""  # no resource_tracker "leaked shared_memory" warning
        assert name in list_segments()
        again = WeightStore.attach(name)
        assert bytes(again.tensor_view(again.entries[0])) == b"abc"
        again.close()
    finally:
        unlink_segment(name)


CHILD_RSS = """
import json, sys
from pathlib import Path
from ipc.weights import WeightStore

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

rss0 = status("VmRSS")
store = WeightStore.from_safetensors(sys.argv[1], [Path(sys.argv[2])])
# each tensor ends in a marker byte (the rest is a hole): it must be in the segment
markers = [store.tensor_view(e)[-1] for e in store.entries]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would count the (large) parent
peak = status("VmHWM")
print(json.dumps({"rss0": rss0, "peak": peak, "anon": status("RssAnon"), "markers": markers,
                  "data_bytes": store.data_bytes}))
store.close()
"""


def sparse_safetensors(path: Path, sizes: list[int]) -> int:
    """A safetensors file of zeros written as a hole (200 MB without writing 200 MB to disk), each
    tensor ending in a marker byte ``i + 1``."""
    header, offset = {}, 0
    for i, n in enumerate(sizes):
        header[f"t{i}"] = {"dtype": "U8", "shape": [n], "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
        for i, info in enumerate(header.values()):
            fh.seek(8 + len(raw) + info["data_offsets"][1] - 1)
            fh.write(bytes([i + 1]))
    return offset


def test_from_safetensors_holds_no_second_copy(shm: SegmentGuard, tmp_path: Path) -> None:
    """Tensors are read from the file straight into the segment, in bounded chunks.

    The process's memory must not grow by anything like the model's size, not even at its peak.
    """
    path = tmp_path / "big.safetensors"
    # the 150 MB tensor comes last, when the segment already holds the rest: a whole-tensor copy
    # then adds 150 MB to the peak on top of everything the segment holds
    total = sparse_safetensors(path, [50 << 20, 1000, 150 << 20])
    name = shm.name("rss")
    try:
        child = run_child(CHILD_RSS, name, str(path))
        assert child.returncode == 0, child.stderr
        m = json.loads(child.stdout)
        assert m["data_bytes"] >= total
        assert m["markers"] == [1, 2, 3]  # the data really went into the segment
        assert m["peak"] - m["rss0"] < 80 << 20, m  # no whole tensor, let alone the model, in memory
        assert m["anon"] < 100 << 20, m
    finally:
        unlink_segment(name)
