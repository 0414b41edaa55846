"""Freed heap goes back to the OS (common/heap.py): the soak's RSS depends on it."""
from __future__ import annotations

import ctypes
import ctypes.util

from common.heap import release_free_heap


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) / 1024


def test_freed_blocks_pinned_below_a_live_one_are_returned():
    """64 KB blocks (under glibc's mmap threshold: from the heap), each followed by a small
    block kept alive, as a frame buffer and a filter's bookkeeping would be: freeing the big
    ones leaves holes glibc keeps; release_free_heap hands them back."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    big, small = [], []
    start = _rss_anon_mb()
    for _ in range(3000):  # ~190 MB
        block = libc.malloc(64 * 1024)
        ctypes.memset(block, 1, 64 * 1024)  # touched: resident
        big.append(block)
        small.append(libc.malloc(64))
    try:
        for block in big:
            libc.free(block)
        held = _rss_anon_mb()
        assert held - start > 150, "glibc returned the holes by itself: nothing left to test"
        assert release_free_heap()
        released = held - _rss_anon_mb()
        assert released > 150, f"only {released:.0f} MB of ~190 MB freed went back"
    finally:
        for block in small:
            libc.free(block)

