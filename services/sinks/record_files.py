"""A sink's files on disk: segments rotated by size and age, each frame's lines written whole
or not at all, synced once a second, and a full disk waited out.

    files = RecordFiles(directory, ("tracks.txt", "tracks.jsonl"), segment_bytes, segment_s, log)
    files.open()                                  # at start; raises only what waiting cannot fix
    files.write({"tracks.txt": b"...", "tracks.jsonl": b"...\\n"})   # one frame
    files.tick()                                  # every loop turn: the once-a-second fsync

**Segments.** The current file keeps its name (`tracks.jsonl`: `tail -F` follows it); when any
of the files reaches `segment_bytes` or has been open `segment_s`, all are closed and renamed to
the next number (`tracks-000001.jsonl`, `tracks-000001.txt`: the same frames), and new current
files are opened. Numbers only grow, so the whole record of a directory in order is
`cat tracks-*.txt tracks.txt` (the shell sorts the zero-padded numbers). The current files are
marked in use (services/sinks/retention.py): no prune deletes them.

**Whole frames.** A frame's chunks are appended with os.write on O_APPEND descriptors; if any
write fails or comes up short (a full disk), every file is truncated back to its size before
the frame, so no file ever holds part of a frame or a partial line, and the frame is either in
all files or in none.

**A full disk** (or any other write error): one ERROR line naming the file, the cause and the
free space (shutil.disk_usage); frames are then counted as not recorded, without touching the
disk, and one write is tried again every `RETRY_S`; when it succeeds, one INFO line says how
many frames were not recorded. What was written before stays as it was.

**Durability.** Every frame reaches the OS at once (a killed process loses nothing) and the
files are fsync'd at least every `SYNC_S` (not per frame: SD cards wear and stall), and on
rotation and close. A power cut loses at most the last ~second of frames; since the kernel may
have written part of the last page, the last line of a file may then be cut short: readers skip
an unterminated last line (`complete_lines`).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from services.sinks.retention import mark_in_use

SYNC_S = 1.0  # fsync at least this often while lines are being written
RETRY_S = 1.0  # after a failed write, the next attempt waits this long
SEGMENT_MAX_BYTES = 64 * 2**20
SEGMENT_MIN_BYTES = 4096
SEGMENT_MAX_S = 3600.0
ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # waiting for room fixes these; others at open() are fatal


def complete_lines(text: str) -> list[str]:
    """The lines of a record file, without an unterminated last one (cut by a power cut)."""
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]


def _closed(directory: Path, name: str) -> list[tuple[int, Path]]:
    """The closed segments of `name` in `directory`, by number."""
    stem, suffix = os.path.splitext(name)
    pattern = re.compile(rf"{re.escape(stem)}-(\d+){re.escape(suffix)}")
    return sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := pattern.fullmatch(p.name)))


def segment_paths(directory: Path, name: str) -> list[Path]:
    """A record's files in order: the closed segments by number, then the current file."""
    current = directory / name
    return [p for _, p in _closed(directory, name)] + ([current] if current.exists() else [])


def read_records(directory: Path, name: str = "tracks.jsonl") -> list[dict]:
    """Every complete JSON line of a record directory's `name`, its segments in order (one
    that retention deletes while this reads is left out)."""
    out = []
    for path in segment_paths(directory, name):
        try:
            out += [json.loads(line) for line in complete_lines(path.read_text())]
        except FileNotFoundError:
            continue
    return out


class _Segment:
    """The current file of one name: an O_APPEND descriptor, marked in use, and its size."""

    def __init__(self, directory: Path, name: str):
        self.name, self.path = name, directory / name
        self.fd: int | None = None
        self.size = 0

    def open(self) -> None:
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            mark_in_use(fd)
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break  # not pruned between the open and the mark
            except FileNotFoundError:
                pass
            os.close(fd)
        self.fd, self.size = fd, os.fstat(fd).st_size

    def append(self, data: bytes) -> None:
        assert self.fd is not None, f"{self.path} is not open"
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)  # a short write is followed by one that raises (ENOSPC)
            self.size += n
            view = view[n:]

    def truncate(self, size: int) -> None:
        if self.size != size:
            assert self.fd is not None, f"{self.path} is not open"
            os.ftruncate(self.fd, size)
            self.size = size

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def closed_name(self, number: int) -> Path:
        stem, suffix = os.path.splitext(self.name)
        return self.path.with_name(f"{stem}-{number:06d}{suffix}")


class RecordFiles:
    """The files one sink writes per frame, in one directory (see the module docstring)."""

    @classmethod
    def from_config(cls, directory: Path, names: tuple[str, ...], sink, log: logging.Logger) -> RecordFiles:
        """Segments a sixteenth of the `sink` section's limits (so pruning can keep close to
        them), at most SEGMENT_MAX_BYTES and SEGMENT_MAX_S, at least SEGMENT_MIN_BYTES and 1 s."""
        max_bytes, max_age_s = sink.max_record_mb * 2**20, sink.retention_days * 86400
        segment_bytes = min(SEGMENT_MAX_BYTES, max_bytes / 16) if max_bytes else SEGMENT_MAX_BYTES
        segment_s = min(SEGMENT_MAX_S, max_age_s / 16) if max_age_s else SEGMENT_MAX_S
        return cls(directory, names, int(max(SEGMENT_MIN_BYTES, segment_bytes)), max(1.0, segment_s), log)

    def __init__(self, directory: Path, names: tuple[str, ...], segment_bytes: int, segment_s: float,
                 log: logging.Logger):
        self.directory = directory
        self.segments = {name: _Segment(directory, name) for name in names}
        self.segment_bytes, self.segment_s = segment_bytes, segment_s
        self.log = log
        self.frames = 0  # recorded
        self.not_recorded = 0
        self.failing = False
        self._missed = 0  # frames not recorded in the current outage
        self._retry_at = 0.0
        self._opened_at = 0.0
        self._dirty = False
        self._synced_at = 0.0

    def open(self) -> None:
        """Make the directory and open the current files; a full disk is waited out, not raised."""
        try:
            self._open()
        except OSError as exc:
            if exc.errno not in ROOM_ERRNOS:
                raise
            self._fail(exc, Path(exc.filename or self.directory), time.monotonic())

    def write(self, chunks: dict[str, bytes]) -> bool:
        """Append one frame's chunk to each named file, all or none; False if it was not recorded."""
        mono = time.monotonic()
        if self.failing and mono < self._retry_at:
            self._not_recorded()
            return False
        segs = [(self.segments[name], data) for name, data in chunks.items() if data]
        sizes = [seg.size for seg, _ in segs]
        current = self.directory
        try:
            if self._is_open() and self._due(mono):
                self._rotate()
            if not self._is_open():
                self._open()
            for seg, data in segs:
                current = seg.path
                seg.append(data)
        except OSError as exc:
            self._undo(segs, sizes)
            self._fail(exc, current, mono)
            self._not_recorded()
            return False
        self.frames += 1
        self._dirty = True
        if self.failing:
            self.failing = False
            self.log.info("%s: writing again; %d frames were not recorded", self.directory, self._missed)
        self.tick()
        return True

    def tick(self) -> None:
        """fsync the files when lines were written and the last sync is `SYNC_S` old."""
        mono = time.monotonic()
        if not self._dirty or mono - self._synced_at < SYNC_S or not self._is_open():
            return
        try:
            for seg in self.segments.values():
                if seg.fd is not None:
                    os.fsync(seg.fd)
        except OSError as exc:
            self._fail(exc, self.directory, mono)
            return
        self._dirty, self._synced_at = False, mono

    def stats(self) -> dict[str, float]:
        return {"recorded": self.frames, "frames_not_recorded": self.not_recorded, "disk_full": int(self.failing)}

    def close(self) -> None:
        for seg in self.segments.values():
            try:
                seg.close()
            except OSError as exc:
                self.log.error("%s: %s", seg.path, exc.strerror or exc)

    def _is_open(self) -> bool:
        return all(seg.fd is not None for seg in self.segments.values())

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for seg in self.segments.values():
            if seg.fd is None:
                seg.open()
        self._opened_at = time.monotonic()
        with contextlib.suppress(OSError):  # a write error shows on the writes; some file systems refuse this
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)  # the new files' names (and a rotation's renames) survive a power cut
            finally:
                os.close(dir_fd)

    def _due(self, mono: float) -> bool:
        return (mono - self._opened_at >= self.segment_s
                or any(seg.size >= self.segment_bytes for seg in self.segments.values()))

    def _rotate(self) -> None:
        """Close the current files and give them the next number (empty ones are reopened as they are)."""
        number = 1 + max((n for name in self.segments for n, _ in _closed(self.directory, name)), default=0)
        for seg in self.segments.values():
            seg.close()
            if seg.size:
                os.rename(seg.path, seg.closed_name(number))
        self._dirty = False

    def _undo(self, segs: list, sizes: list[int]) -> None:
        for (seg, _), size in zip(segs, sizes):
            if seg.fd is not None:
                try:
                    seg.truncate(size)
                except OSError as exc:
                    self.log.error("%s: cannot cut back a partial frame: %s", seg.path, exc.strerror or exc)

    def _fail(self, exc: OSError, path: Path, mono: float) -> None:
        self._retry_at = mono + RETRY_S
        if self.failing:
            return
        self.failing, self._missed = True, 0
        try:
            usage = shutil.disk_usage(self.directory if self.directory.exists() else self.directory.parent)
            room = f"{usage.free / 2**20:.1f} MB free of {usage.total / 2**20:.1f} MB"
        except OSError:
            room = "free space unknown"
        self.log.error("cannot write %s: %s (%s); not recording until it can, retrying every %.0f s",
                       path, exc.strerror or exc, room, RETRY_S)

    def _not_recorded(self) -> None:
        self.not_recorded += 1
        self._missed += 1
