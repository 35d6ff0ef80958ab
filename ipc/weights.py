"""The shared weight store: every tensor of one model in one POSIX shared-memory segment.

Layout of a segment::

    0      magic (8 bytes, written last: a segment whose writer died reads as incomplete)
    8      manifest length (8 bytes, little endian)
    16     manifest (JSON: tensors with name, dtype, shape, offset, nbytes; data offset and size)
    data   every tensor's bytes, each at a 64-byte aligned offset from ``data_offset``
           (``data_offset`` is page aligned so the data region can be pinned for CUDA as a whole)

Segments are named ``dsocr_<owner pid>_<model>``: the owner is the supervisor, so a new supervisor
can find and remove the segments of a dead one. Segments are opened with ``_posixshmem`` directly,
never through ``multiprocessing.shared_memory``, whose resource tracker would unlink (or warn
about) a segment when an attaching process exits. This module does not import torch: the
supervisor uses it too. dtypes are safetensors' names (``F32``, ``BF16``...).
"""

from __future__ import annotations

import _posixshmem
import mmap
import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

PREFIX = "dsocr_"
SHM_DIR = Path("/dev/shm")
_MAGIC = b"DSOCRW01"
_HEAD = struct.Struct("<8sQ")
TENSOR_ALIGN = 64
PAGE = mmap.PAGESIZE
_READ_CHUNK = 64 << 20

DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


class StoreError(RuntimeError):
    """A segment that cannot be created, read or found."""


class OutOfSharedMemory(StoreError):
    """/dev/shm cannot hold the model (Docker's default is 64 MB: raise ``shm_size``)."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # from the start of the data region
    nbytes: int


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def segment_name(owner_pid: int, model: str) -> str:
    """The segment name for ``model`` owned by process ``owner_pid`` (no slashes, short)."""
    safe = re.sub(r"[^A-Za-z0-9.-]", "-", model)[:80]
    return f"{PREFIX}{owner_pid}_{safe}"


def owner_pid(name: str) -> int | None:
    match = re.fullmatch(rf"{PREFIX}(\d+)_.+", name)
    return int(match.group(1)) if match else None


def _layout(specs: Iterable[tuple[str, str, tuple[int, ...]]]) -> tuple[list[TensorEntry], int]:
    entries, cursor = [], 0
    for name, dtype, shape in specs:
        if dtype not in DTYPE_SIZES:
            raise StoreError(f"tensor {name!r} has unsupported dtype {dtype}")
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * DTYPE_SIZES[dtype]
        entries.append(TensorEntry(name, dtype, tuple(shape), cursor, nbytes))
        cursor = _align(cursor + nbytes, TENSOR_ALIGN)
    return entries, cursor


class WeightStore:
    """One mapped segment. Create it (the engine, on load) or attach to it (restores)."""

    def __init__(
        self, name: str, buf: mmap.mmap, entries: list[TensorEntry], data_offset: int,
        data_bytes: int, metadata: dict[str, Any], writable: bool, manifest_len: int,
    ) -> None:  # fmt: skip
        self.name = name
        self._manifest_len = manifest_len
        self._mmap = buf
        self.entries = entries
        self.data_offset = data_offset
        self.data_bytes = data_bytes
        self.metadata = metadata
        self.writable = writable

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, name: str, specs: list[tuple[str, str, tuple[int, ...]]],
        metadata: dict[str, Any] | None = None,
    ) -> WeightStore:  # fmt: skip
        """An empty segment laid out for ``specs`` (name, dtype, shape); fill it, then :meth:`seal`.

        The memory is reserved up front (``posix_fallocate``) so that a too small /dev/shm fails
        here with :class:`OutOfSharedMemory` instead of killing the writer with SIGBUS later.
        """
        entries, data_bytes = _layout(specs)
        manifest = orjson.dumps(
            {
                "tensors": [[e.name, e.dtype, list(e.shape), e.offset, e.nbytes] for e in entries],
                "data_bytes": data_bytes,
                "metadata": metadata or {},
            }
        )
        data_offset = _align(_HEAD.size + len(manifest), PAGE)
        size = data_offset + max(data_bytes, 1)
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        except FileExistsError:
            raise StoreError(f"shared-memory segment {name} already exists") from None
        try:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                free = _shm_free_bytes()
                raise OutOfSharedMemory(
                    f"/dev/shm cannot hold {size / 2**20:.1f} MiB for {name} "
                    f"({free / 2**20:.1f} MiB free): {exc.strerror}; in Docker raise shm_size"
                ) from None
            buf = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            _posixshmem.shm_unlink("/" + name)
            raise
        os.close(fd)
        buf[_HEAD.size : _HEAD.size + len(manifest)] = manifest
        return cls(name, buf, entries, data_offset, data_bytes, metadata or {}, True, len(manifest))

    @classmethod
    def from_safetensors(cls, name: str, paths: list[Path]) -> WeightStore:
        """A sealed segment holding every tensor of the safetensors files ``paths``.

        Each tensor is read from the file straight into the segment: the process never holds a
        second full copy of the weights.
        """
        headers = [(Path(p), *_read_safetensors_header(Path(p))) for p in paths]
        specs, sources, metadata = [], [], {}
        for path, header, base in headers:
            metadata.update(header.pop("__metadata__", None) or {})
            for tname, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                specs.append((tname, info["dtype"], tuple(info["shape"])))
                begin, end = info["data_offsets"]
                sources.append((path, base + begin, end - begin))

        def fill(store: WeightStore) -> None:
            for entry, (path, _, nbytes) in zip(store.entries, sources):
                if nbytes != entry.nbytes:
                    raise StoreError(f"{path}: tensor {entry.name} has {nbytes} bytes, expected {entry.nbytes}")
            # written through the segment's fd, not its mapping: the kernel copies page cache to
            # tmpfs without faulting every page into this process (about twice as fast)
            out = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
            try:
                for path in dict.fromkeys(p for p, _, _ in sources):
                    with open(path, "rb", buffering=0) as fh:
                        for entry, (src, file_offset, nbytes) in zip(store.entries, sources):
                            if src == path:
                                _copy(fh, file_offset, out, store.data_offset + entry.offset, nbytes)
            finally:
                os.close(out)

        return cls._create_filled(name, specs, metadata, fill)

    @classmethod
    def from_arrays(
        cls, name: str, arrays: list[tuple[str, str, tuple[int, ...], Any]],
        metadata: dict[str, Any] | None = None,
    ) -> WeightStore:  # fmt: skip
        """A sealed segment from in-memory tensors: (name, dtype, shape, bytes-like of the data)."""

        def fill(store: WeightStore) -> None:
            for entry, (_, _, _, data) in zip(store.entries, arrays):
                src = memoryview(data).cast("B")
                if src.nbytes != entry.nbytes:
                    raise StoreError(f"tensor {entry.name}: {src.nbytes} bytes, expected {entry.nbytes}")
                store.tensor_view(entry)[:] = src

        return cls._create_filled(name, [(n, d, s) for n, d, s, _ in arrays], metadata, fill)

    @classmethod
    def _create_filled(
        cls, name: str, specs: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, Any] | None,
        fill: Callable[[WeightStore], None],
    ) -> WeightStore:  # fmt: skip
        """Create, fill and seal; a failure anywhere leaves no segment behind."""
        store = cls.create(name, specs, metadata)
        try:
            fill(store)
            store.seal()
        except BaseException:
            store.close()
            unlink_segment(name)
            raise
        return store

    def seal(self) -> None:
        """Mark the segment complete: the magic goes in last."""
        self._mmap[: _HEAD.size] = _HEAD.pack(_MAGIC, self._manifest_len)

    # -- attaching ------------------------------------------------------------------------

    @classmethod
    def attach(cls, name: str) -> WeightStore:
        """Map an existing, sealed segment, read-only: nothing after the load writes weights."""
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, mode=0o600)
        except FileNotFoundError:
            raise StoreError(f"shared-memory segment {name} does not exist") from None
        try:
            size = os.fstat(fd).st_size
            if size < _HEAD.size:
                raise StoreError(f"segment {name} is {size} bytes: not a weight store")
            prot = mmap.PROT_READ
            buf = mmap.mmap(fd, size, prot=prot)
        finally:
            os.close(fd)
        magic, manifest_len = _HEAD.unpack_from(buf)
        if magic != _MAGIC:
            buf.close()
            raise StoreError(f"segment {name} is incomplete (its writer did not finish)")
        manifest = orjson.loads(buf[_HEAD.size : _HEAD.size + manifest_len])
        entries = [TensorEntry(n, d, tuple(s), o, b) for n, d, s, o, b in manifest["tensors"]]
        data_offset = _align(_HEAD.size + manifest_len, PAGE)
        return cls(
            name, buf, entries, data_offset, manifest["data_bytes"], manifest["metadata"],
            False, manifest_len,
        )  # fmt: skip

    # -- access ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes mapped (header, manifest and data)."""
        return len(self._mmap)

    def data_view(self) -> memoryview:
        """The whole data region: one contiguous, page-aligned block."""
        return memoryview(self._mmap)[self.data_offset : self.data_offset + self.data_bytes]

    def tensor_view(self, entry: TensorEntry) -> memoryview:
        start = self.data_offset + entry.offset
        return memoryview(self._mmap)[start : start + entry.nbytes]

    def close(self) -> None:
        """Unmap. Fails with BufferError while views (tensors) of the segment are still alive."""
        self._mmap.close()

    def __repr__(self) -> str:
        return f"WeightStore({self.name!r}, {len(self.entries)} tensors, {self.data_bytes} bytes)"


def _read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100 << 20:
                raise StoreError(f"{path}: header of {length} bytes is not safetensors")
            header = orjson.loads(fh.read(length))
    except (OSError, struct.error, orjson.JSONDecodeError) as exc:
        raise StoreError(f"cannot read safetensors file {path}: {exc}") from None
    return header, 8 + length


def _copy(fh: BinaryIO, src_offset: int, out_fd: int, dst_offset: int, nbytes: int) -> None:
    """``nbytes`` of ``fh`` from ``src_offset`` into the file ``out_fd`` at ``dst_offset``."""
    os.lseek(out_fd, dst_offset, os.SEEK_SET)
    done = 0
    while done < nbytes:
        n = os.sendfile(out_fd, fh.fileno(), src_offset + done, min(_READ_CHUNK, nbytes - done))
        if not n:
            raise StoreError(f"{fh.name}: file ends before tensor data at {src_offset + done}")
        done += n


def _shm_free_bytes() -> int:
    try:
        st = os.statvfs(SHM_DIR)
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


def unlink_segment(name: str) -> bool:
    """Remove segment ``name``; False if it was already gone. Mappings stay valid until unmapped."""
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        return False
    return True


def list_segments() -> list[str]:
    """Names of every dsocr segment on this host."""
    try:
        return sorted(p.name for p in SHM_DIR.iterdir() if p.name.startswith(PREFIX))
    except FileNotFoundError:
        return []


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans() -> list[str]:
    """Unlink the segments whose owning process is dead; returns their names."""
    removed = []
    for name in list_segments():
        pid = owner_pid(name)
        if pid is not None and not pid_alive(pid) and unlink_segment(name):
            removed.append(name)
    return removed


class HostSegments:
    """The segments as the supervisor's owners see them (a seam: the simulation keeps its own)."""

    def exists(self, name: str) -> bool:
        return (SHM_DIR / name).exists()

    def size(self, name: str) -> int:
        try:
            return (SHM_DIR / name).stat().st_size
        except OSError:
            return 0

    def unlink(self, name: str) -> bool:
        return unlink_segment(name)
