"""Give the C heap's free pages back to the system after a page.

A page's tensors (a detector map of a megapixel, recognition batches of 1-20 MB each) come and go;
glibc keeps the freed memory in its arenas (its mmap threshold rises after the first large frees),
so an engine that read ten pages held about twice the memory of one that reads one. ``malloc_trim``
returns those pages (a few milliseconds); elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """True when the C library took the call (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
