"""Shared test helpers: image bytes, segment bookkeeping and process checks.

Other sessions (and other test modules) may create ``dsocr_*`` segments on this host at the same
time, so the segment guard only judges the names of this test process (``dsocr_<our pid>_``) and
the names a test asked it for, never the whole of /dev/shm.
"""

from __future__ import annotations

import io
import os
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ipc.weights import PREFIX, list_segments, segment_name, unlink_segment

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment for a fresh ``python -c`` that imports the project from this checkout."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def png_bytes(width: int = 64, height: int = 32, color: str = "white", mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so only the size lies)."""
    data = bytearray(png_bytes(1, 1))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))  # over chunk type + 13 data bytes
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def render_text(lines: list[str], size: int = 32) -> bytes:
    """A PNG of ``lines`` in black on white, as a scanner would give it: a real image to read."""
    font = ImageFont.load_default(size=size)  # PIL's built-in scalable font: no system font needed
    width = max(int(font.getlength(line)) for line in lines) + 80
    img = Image.new("RGB", (width, 40 + len(lines) * (size + 24)), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((40, 20 + i * (size + 24)), line, font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def text_png(text: str = "Hello dsocr 2024", font_size: int = 32) -> bytes:
    """One line of text (see :func:`render_text`)."""
    return render_text([text], font_size)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs. A zombie counts as gone: it holds no memory, and in a
    container whose pid 1 does not reap, an orphan's zombie may stay in the table for good."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state in ("Z", "X")


class SegmentGuard:
    """Hands out unique segment names and finds the segments a test left behind."""

    def __init__(self) -> None:
        self.ours = f"{PREFIX}{os.getpid()}_"
        self.tracked: set[str] = set()
        self.before = set(self._ours_now())

    def _ours_now(self) -> list[str]:
        return [n for n in list_segments() if n.startswith(self.ours)]

    def name(self, label: str = "test") -> str:
        """A fresh name owned by this process (so the supervisor's naming rules still hold)."""
        name = segment_name(os.getpid(), f"t-{label}-{uuid.uuid4().hex[:8]}")
        self.tracked.add(name)
        return name

    def track(self, name: str) -> str:
        """Watch a name the guard did not make (a dead owner's segment, for instance)."""
        self.tracked.add(name)
        return name

    def leftovers(self) -> list[str]:
        present = set(list_segments())
        new_ours = set(self._ours_now()) - self.before
        return sorted((self.tracked & present) | new_ours)


@pytest.fixture
def shm() -> Iterator[SegmentGuard]:
    """Fails a test that leaves a segment behind, and removes the leftovers in every case."""
    guard = SegmentGuard()
    yield guard
    left = guard.leftovers()
    for name in left:
        unlink_segment(name)
    assert not left, f"test left shared-memory segments behind: {left}"
