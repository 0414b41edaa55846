"""Frames in POSIX shared memory: a ring of fixed slots with a seqlock per slot.

Capture owns the ring: it creates the segment (mode 0600, space reserved at once so a
too-small /dev/shm fails at start, not with SIGBUS later), writes frame after frame into
slot `frame_id % slots`, and unlinks it at exit. The owner holds an exclusive `flock` on the
segment for its life: a second capture of the same name (another stack with the same
stack.id) is refused, naming the owner's pid from the header, while a segment whose owner
died (the kernel dropped its lock; a pid alone could have been reused) is replaced. Everyone else attaches by `mmap` of the
/dev/shm file, which keeps Python's resource tracker out of it (before 3.13 the tracker
unlinks segments it never owned when an attached process exits).

Seqlock: a slot's sequence number is odd while the writer fills it and even when the
frame is whole. A `Frame` message carries the even number; a reader copies the pixels and
checks the number before and after: any change means the slot was overwritten under it,
and the copy is thrown away (`read` returns None). The writer never waits for readers.

The sequence numbers are loaded and stored through common/seqlock.c (acquire/release, built
by `make setup` into common/_seqlock.so, called with ctypes), not as numpy values: the pixels
are copied with plain loads and stores, and only these barriers keep them between the two
sequence checks. x86 is total-store-order, so plain accesses would happen to work there;
the Pi's ARM cores reorder independent loads and stores, and a reader could copy pixels the
writer is still changing yet see the same even number before and after. seqlock.c says which
barrier stops which reordering.
"""
from __future__ import annotations

import fcntl
import ctypes
import functools
import logging
import mmap
import os
import struct
from pathlib import Path

import numpy as np

from common.runs import new_run_id

log = logging.getLogger(__name__)

MAGIC = b"FTRING01"
_HEADER = struct.Struct("<8sIIQIIIQI")  # magic, version, slots, slot_bytes, width, height, channels, ring_id, owner pid
HEADER_BYTES = 64
SLOT_HEADER_BYTES = 64  # seq u64, frame_id i64, t_capture f64, width u32, height u32
ALIGN = 64


SEQLOCK_LIB = Path(__file__).resolve().parent / "_seqlock.so"


class RingError(Exception):
    """A ring that cannot be created or attached, worded as one line."""


@functools.cache
def seqlock() -> ctypes.CDLL:
    """common/_seqlock.so (built from seqlock.c by `make setup`) with its signatures."""
    try:
        lib = ctypes.CDLL(str(SEQLOCK_LIB))
    except OSError as exc:
        raise RingError(f"frame ring: {SEQLOCK_LIB} cannot be loaded ({exc}); `make setup` builds it from "
                        "common/seqlock.c with the C compiler") from None
    for name, restype, argtypes in (("ft_seq_begin_read", ctypes.c_uint64, [ctypes.c_void_p]),
                                    ("ft_seq_end_read", ctypes.c_uint64, [ctypes.c_void_p]),
                                    ("ft_seq_begin_write", None, [ctypes.c_void_p, ctypes.c_uint64]),
                                    ("ft_seq_end_write", None, [ctypes.c_void_p, ctypes.c_uint64])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def ring_path(name: str, shm_dir: str | os.PathLike = "/dev/shm") -> Path:
    return Path(shm_dir) / name


def lores_name(name: str) -> str:
    """The ring of the camera's lores frames beside ring `name` (same slots, same ring id)."""
    return f"{name}-lores"


class FrameRing:
    """One mapping of the ring; use `create` (the owner) or `attach` (readers)."""

    def __init__(self, path: Path, fd: int, owner: bool):
        try:
            self._sync = seqlock()
        except RingError:
            os.close(fd)
            raise
        self.path = path
        self.owner = owner
        self._fd = fd
        self._mm = None
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            os.close(fd)
            raise RingError(f"frame ring {path}: segment is {size} bytes, not a ring")
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        magic, version, slots, slot_bytes, width, height, channels, ring_id, _ = _HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC or version != 1:
            self.close()
            raise RingError(f"frame ring {path}: not a facetrack ring (bad magic/version)")
        if size < HEADER_BYTES + slots * slot_bytes:
            self.close()
            raise RingError(f"frame ring {path}: segment truncated ({size} bytes)")
        self.slots, self.slot_bytes, self.ring_id = slots, slot_bytes, ring_id
        self.width, self.height, self.channels = width, height, channels
        buf = np.frombuffer(self._mm, dtype=np.uint8)
        self._slot_views = []
        for i in range(slots):
            base = HEADER_BYTES + i * slot_bytes
            head = buf[base:base + SLOT_HEADER_BYTES]
            pixels = buf[base + SLOT_HEADER_BYTES:base + SLOT_HEADER_BYTES + width * height * channels]
            self._slot_views.append((head[:8].view(np.uint64), head[8:16].view(np.int64),
                                     head[16:24].view(np.float64), head[24:32].view(np.uint32), pixels))
        self._seq_addr = [views[0].ctypes.data for views in self._slot_views]  # the u64 seqlock.c reads and writes

    @classmethod
    def create(cls, name: str, width: int, height: int, slots: int, channels: int = 3,
               shm_dir: str | os.PathLike = "/dev/shm", ring_id: int | None = None) -> "FrameRing":
        """Create the ring (owner). A segment of the same name whose owner is alive is refused
        (RingError naming its pid); one whose owner died is removed first. `ring_id` (default: a
        new capture run, common/runs.py) lets a companion ring (lores) share its main ring's id."""
        path = ring_path(name, shm_dir)
        slot_bytes = _aligned(SLOT_HEADER_BYTES + width * height * channels)
        size = HEADER_BYTES + slots * slot_bytes
        if path.exists():
            _remove_unowned(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # cannot fail: the file is new and ours
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            free = os.statvfs(path.parent)
            free_mb = free.f_bavail * free.f_frsize / 2**20
            raise RingError(
                f"frame ring {path}: {path.parent} has {free_mb:.1f} MB free but the ring needs "
                f"{size / 2**20:.1f} MB ({slots} slots of {width}x{height}); enlarge it or lower "
                f"ring.slots / capture size ({exc.strerror})") from None
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mm:
            if ring_id is None:
                ring_id = new_run_id()  # the capture run (common/runs.py)
            _HEADER.pack_into(mm, 0, MAGIC, 1, slots, slot_bytes, width, height, channels, ring_id, os.getpid())
        log.info("frame ring %s: %d slots of %dx%dx%d (%.1f MB)", path, slots, width, height,
                 channels, size / 2**20)
        return cls(path, fd, owner=True)

    @classmethod
    def attach(cls, name: str, shm_dir: str | os.PathLike = "/dev/shm") -> "FrameRing":
        """Attach to an existing ring (reader); raises RingError if capture has not made it."""
        path = ring_path(name, shm_dir)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RingError(f"frame ring {path}: not found (is capture running?)") from None
        return cls(path, fd, owner=False)

    def write(self, frame_id: int, t_capture: float, image: np.ndarray) -> tuple[int, int]:
        """Copy `image` into the next slot; returns (slot, seq) for the Frame message."""
        h, w = image.shape[:2]
        if w > self.width or h > self.height or (image.ndim == 3 and image.shape[2] != self.channels):
            raise RingError(f"frame ring {self.path}: frame {w}x{h} does not fit slots of {self.width}x{self.height}")
        slot = frame_id % self.slots
        _, id_view, t_view, size_view, pixels = self._slot_views[slot]
        addr = self._seq_addr[slot]
        odd = int(self._sync.ft_seq_begin_read(addr)) + 1 | 1  # only this process writes it
        self._sync.ft_seq_begin_write(addr, odd)  # readers now see a changed number, before any pixel
        pixels[:w * h * self.channels] = image.reshape(-1)
        id_view[0], t_view[0] = frame_id, t_capture
        size_view[0], size_view[1] = w, h
        self._sync.ft_seq_end_write(addr, odd + 1)  # every pixel is visible before the even number
        return slot, odd + 1

    def read(self, slot: int, seq: int, out: np.ndarray | None = None) -> np.ndarray | None:
        """Copy the frame of (slot, seq); None if it was overwritten before or during the copy."""
        if not 0 <= slot < self.slots:
            raise RingError(f"frame ring {self.path}: slot {slot} out of range 0..{self.slots - 1}")
        _, _, _, size_view, pixels = self._slot_views[slot]
        addr = self._seq_addr[slot]
        if self._sync.ft_seq_begin_read(addr) != seq:  # acquire: no pixel load moves above it
            return None
        w, h = int(size_view[0]), int(size_view[1])
        if w * h * self.channels > pixels.size:  # a torn size (the check below throws the copy away)
            return None
        if out is None or out.shape != (h, w, self.channels):
            out = np.empty((h, w, self.channels), np.uint8)
        np.copyto(out.reshape(-1), pixels[:w * h * self.channels])
        if self._sync.ft_seq_end_read(addr) != seq:  # fence: every pixel load is done before this one
            return None
        return out

    def peek(self, slot: int) -> tuple[int, int]:
        """(seq, frame_id) of a slot as it is now; seq is odd while the writer is in it."""
        _, id_view, _, _, _ = self._slot_views[slot]
        return int(self._sync.ft_seq_begin_read(self._seq_addr[slot])), int(id_view[0])

    def close(self) -> None:
        """Drop the mapping (views die with it), and unlink if we own the ring."""
        if self._fd < 0:
            return
        self._slot_views, self._seq_addr = [], []
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        os.close(self._fd)
        self._fd = -1
        if self.owner:
            self.path.unlink(missing_ok=True)
            log.info("frame ring %s: unlinked", self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _remove_unowned(path: Path) -> None:
    """Unlink a segment left by a dead owner; RingError naming the pid of a live one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            head = os.pread(fd, _HEADER.size, 0)
            pid = _HEADER.unpack(head)[-1] if len(head) == _HEADER.size and head[:8] == MAGIC else 0
            raise RingError(f"frame ring {path}: in use by pid {pid or 'unknown'} (another capture with the "
                            f"same stack.id?); stop it or give this stack another stack.id") from None
        log.warning("frame ring %s: removing a stale segment left by an earlier run", path)
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


class RingReader:
    """A reader's view of the stack's ring: attaches lazily, re-attaches when capture restarts.

    `read(frame_msg)` returns a copy of the frame's pixels or None when the frame is gone
    (overwritten, torn, or its ring no longer exists); `stale` counts those.
    """

    def __init__(self, name: str, shm_dir: str | os.PathLike = "/dev/shm"):
        self.name, self.shm_dir = name, shm_dir
        self.ring: FrameRing | None = None
        self.stale = 0
        self._buf: np.ndarray | None = None

    def read(self, frame, copy: bool = True) -> np.ndarray | None:
        """Pixels of `frame` (a messages.Frame). With copy=False the returned array is reused
        by the next call: use it before reading again."""
        return self.read_at(frame.ring_id, frame.slot, frame.seq, copy)

    def read_at(self, ring_id: int, slot: int, seq: int, copy: bool = True) -> np.ndarray | None:
        """Pixels at (slot, seq) of ring instance `ring_id`; as read()."""
        if self.ring is None or self.ring.ring_id != ring_id:
            self._reattach()
            if self.ring is None or self.ring.ring_id != ring_id:
                self.stale += 1
                return None
        if not 0 <= slot < self.ring.slots:
            self.stale += 1
            return None
        image = self.ring.read(slot, seq, None if copy else self._buf)
        if image is None:
            self.stale += 1
        elif not copy:
            self._buf = image
        return image

    def _reattach(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
            self._buf = None
        try:
            self.ring = FrameRing.attach(self.name, self.shm_dir)
            log.info("frame ring %s: attached (ring id %x)", self.ring.path, self.ring.ring_id)
        except RingError as exc:
            log.warning("%s", exc)

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
