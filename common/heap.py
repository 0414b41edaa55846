"""Hand freed heap memory back to the OS, so a long-running service's RSS tracks what it uses.

glibc keeps freed memory inside its heap: the brk heap shrinks only from its top, and a
small block still in use above a large freed one (a frame copy, a correlation filter's
workspace) pins it. In a 30-min soak the tracker's RSS rose in steps this way and stayed
up although its live memory did not grow. `malloc_trim(0)` returns every whole free page
of every arena (madvise), wherever it lies. Other C libraries (musl) have no such call:
`release_free_heap` then does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        log.debug("no malloc_trim in this C library: freed heap stays with the process")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_heap() -> bool:
    """Return freed heap pages to the OS; True if any were returned."""
    return bool(_TRIM(0)) if _TRIM is not None else False
