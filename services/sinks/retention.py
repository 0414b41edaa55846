"""Retention: the files under one directory (`sink.record_dir`) bounded by age and total size.

    retention = Retention(root, max_bytes=1024 * 2**20, max_age_s=7 * 86400)
    counts = retention.prune(time.time())   # every few seconds, never per frame
    Pruner(retention, every_s=5.0).start()  # the same, in a thread of its own

`prune` walks every regular file under `root` (whoever wrote it: the recorder's segments of
every session, the jsonl sink's, face snapshots), deletes those last modified more than
`max_age_s` ago, then the oldest (by mtime) until the total is at most `max_bytes`; 0 turns
either limit off. A file a writer still has open and has marked with `mark_in_use(fd)` (a
shared `flock`, so it holds across processes and ends with the process) is never deleted
(its bytes still count; the next oldest goes instead): the current segment of a recorder
stays whole. A directory that a prune empties is removed when its newest deleted file was
older than `QUIET_S`, so a writer makes its directory when it is missing
(`mkdir(parents=True, exist_ok=True)`) before writing into it. Several processes may prune
the same root at once: a file one of them deleted first is skipped.

A prune deletes at most `MAX_DELETES` files (the next one goes on): a backlog of months is
worked off in steps rather than one pass of minutes.

A sink kind that writes files gets this for nothing: its `record_root()` (services/sinks/
base.py) returns the directory they are under, normally `Path(ctx.config.sink.record_dir)`,
and the sink process (services/sink.py) runs a `Pruner`: a thread that prunes that root every
`sink.retention_check_s`, off the frame loop (a walk of a directory of months of files on an
SD card takes seconds; the loop never waits for it), with
the limits `sink.max_record_mb` and `sink.retention_days` (`Retention.from_config`), and adds
`stats()` to the sink's metrics. Any file under `sink.record_dir` is pruned by whichever
sink runs, whoever wrote it.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sink.retention")

LOG_EVERY_S = 600.0  # a prune that deletes logs one line at most this often (the metrics count every one)
QUIET_S = 60.0  # an emptied directory with a write younger than this is kept (a writer may be in it)
MAX_DELETES = 1000  # files one prune deletes at most


def mark_in_use(fd: int) -> None:
    """Mark an open file as being written: no prune (in any process) deletes it while it stays open."""
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits, at most for a prune's unlink of this very file


def root_for(directory: Path, record_dir: Path) -> Path:
    """What retention covers for a sink writing into `directory`: all of `record_dir` when the
    directory is inside it, else the directory alone (an `--out` elsewhere)."""
    return record_dir if directory.resolve().is_relative_to(record_dir.resolve()) else directory


@dataclass
class PruneCounts:
    """What one prune did and found: files and bytes deleted, and what is left under the root."""
    files_deleted: int = 0
    bytes_deleted: int = 0
    files: int = 0
    bytes: int = 0


@dataclass(slots=True)
class _Entry:
    path: str  # a str, not a Path: a walk of months of files keeps one per file
    size: int
    mtime: float


class Retention:
    """Keeps `root` within `max_bytes` (0: no size limit) and `max_age_s` (0: no age limit)."""

    def __init__(self, root: str | os.PathLike, max_bytes: int, max_age_s: float):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.total = PruneCounts()  # files/bytes deleted since start; files/bytes as of the last prune
        self._logged_at = -LOG_EVERY_S

    @classmethod
    def from_config(cls, root: str | os.PathLike, sink) -> Retention:
        """The limits of the `sink` config section (sink.max_record_mb, sink.retention_days)."""
        return cls(root, int(sink.max_record_mb * 2**20), sink.retention_days * 86400)

    def prune(self, now: float) -> PruneCounts:
        """Delete what is over age, then the oldest until within size; returns this prune's counts."""
        entries = self._scan()
        counts = PruneCounts()
        emptied: dict[Path, float] = {}
        kept_bytes = sum(e.size for e in entries)
        for e in sorted(entries, key=lambda e: e.mtime):  # oldest first
            too_old = self.max_age_s > 0 and e.mtime < now - self.max_age_s
            too_big = self.max_bytes > 0 and kept_bytes > self.max_bytes
            if not (too_old or too_big) or counts.files_deleted >= MAX_DELETES:
                break  # the rest are younger and the size limit is met, or the next prune goes on
            if self._delete(e):
                counts.files_deleted += 1
                counts.bytes_deleted += e.size
                kept_bytes -= e.size
                parent = Path(e.path).parent
                emptied[parent] = max(emptied.get(parent, 0.0), e.mtime)
        for directory, newest in sorted(emptied.items(), key=lambda d: len(d[0].parts), reverse=True):
            if directory != self.root and now - newest >= QUIET_S:
                with contextlib.suppress(OSError):  # not empty: something else is in it
                    directory.rmdir()
        counts.files = len(entries) - counts.files_deleted
        counts.bytes = kept_bytes
        self.total.files_deleted += counts.files_deleted
        self.total.bytes_deleted += counts.bytes_deleted
        self.total.files, self.total.bytes = counts.files, counts.bytes
        if counts.files_deleted and now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.info("retention: %d files (%.1f MB) deleted under %s since start; %d files, %.1f MB left",
                     self.total.files_deleted, self.total.bytes_deleted / 2**20, self.root, counts.files,
                     counts.bytes / 2**20)
        return counts

    def stats(self) -> dict[str, float]:
        """For a sink's metrics: deleted since start, and the directory's size at the last prune."""
        return {"retention_files_deleted": self.total.files_deleted,
                "retention_bytes_deleted": self.total.bytes_deleted,
                "record_files": self.total.files, "record_bytes": self.total.bytes}

    def _scan(self) -> list[_Entry]:
        """Every regular file under the root (symlinks are not followed nor counted)."""
        entries = []
        for top, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    entries.append(_Entry(path, st.st_size, st.st_mtime))
        return entries

    @staticmethod
    def _delete(e: _Entry) -> bool:
        """Unlink `e` unless a writer has it marked in use (or another prune got there first)."""
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone, or not ours to open
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # being written
            try:
                os.unlink(e.path)
            except OSError:  # gone already, or a read-only disk (its writer reports that)
                return False
            return True
        finally:
            os.close(fd)


class Pruner:
    """Runs `retention.prune` every `every_s` in a thread of its own, from the moment it starts
    (a restart finds what accumulated), so no walk of the directory ever stalls a frame loop."""

    def __init__(self, retention: Retention, every_s: float):
        self.retention, self.every_s = retention, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stats(self) -> dict[str, float]:
        return self.retention.stats()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.retention.prune(time.time())
            except OSError as exc:  # the walk itself skips what it cannot read; this is rarer
                log.error("retention under %s: %s", self.retention.root, exc)
            self._stop.wait(self.every_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
