"""Freed heap goes back to the OS (common/heap.py): the soak's RSS depends on it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from common.config import ROOT

# Run in a fresh interpreter: a long test process's heap already holds free space that
# would take these blocks and hide the effect.
CHILD = textwrap.dedent('''
    import ctypes, ctypes.util, json
    from common.heap import release_free_heap

    def rss_anon_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("RssAnon")) / 1024

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start = rss_anon_mb()
    big, small = [], []
    for _ in range(3000):  # ~190 MB
        block = libc.malloc(64 * 1024)
        ctypes.memset(block, 1, 64 * 1024)  # touched: resident
        big.append(block)
        small.append(libc.malloc(64))
    for block in big:
        libc.free(block)
    held = rss_anon_mb()
    returned = release_free_heap()
    print(json.dumps({"start": start, "held": held, "after": rss_anon_mb(), "returned": returned}))
''')


def test_freed_blocks_pinned_below_a_live_one_are_returned():
    """64 KB blocks (under glibc's mmap threshold: from the heap), each followed by a small
    block kept alive, as a frame buffer and a filter's bookkeeping would be: freeing the big
    ones leaves holes glibc keeps; release_free_heap hands them back."""
    run = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    mb = json.loads(run.stdout)
    assert mb["held"] - mb["start"] > 150, f"glibc returned the holes by itself: nothing to test ({mb})"
    assert mb["returned"] and mb["held"] - mb["after"] > 150, f"freed heap stayed resident: {mb}"
