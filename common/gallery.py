"""The face gallery: enrolled people's face descriptors in one SQLite file.

Written by `facetrack enroll` / `facetrack gallery`, read by the identity service, possibly
at the same time: SQLite's locking keeps both sides whole, and the service notices a change
by the file's mtime and size (the rollback journal is kept, not WAL, so every commit touches
the main file). Removing a person really deletes their faces: `secure_delete` overwrites the
freed bytes with zeros, and a gallery someone switched to WAL is checkpointed and its -wal file
truncated after the delete, so no descriptor of theirs is left in any of the gallery's files.
The file and its journals are mode 0600 (faces are personal data). A face may carry a
thumbnail (the JPEG it was enrolled from on the live view's pages), in a table of its own
(a face's row stays small, its descriptor in one piece on its page), deleted with the face
in one transaction, so removing the person securely deletes it too. The descriptor model's
name is stored with the faces: descriptors of another model are not comparable, so such a
gallery is refused rather than silently wrong.
Any problem with the file becomes a GalleryError of one line.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.permissions import private_file

log = logging.getLogger(__name__)

MODEL = "dlib-resnet-face-api-1.7.15"  # what produced the descriptors (models/facerec)
DIM = 128
UNKNOWN = "unknown"
MAX_NAME = 40  # characters
NAME_PUNCTUATION = " .'-"
CHECKPOINT_TRIES = 20  # 0.1 s apart: how long a removal waits for a reader of a WAL gallery
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    descriptor BLOB NOT NULL,
    source TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_name ON faces (name);
CREATE TABLE IF NOT EXISTS thumbnails (face_id INTEGER PRIMARY KEY, jpeg BLOB NOT NULL);
"""


class GalleryError(Exception):
    """A gallery file that cannot be used, worded as one line."""


class BadName(GalleryError):
    """A name that cannot be a person's name, worded as one line."""


def check_name(name: str) -> str:
    """`name` without surrounding spaces, if it can be a person's name: 1 to MAX_NAME letters,
    digits, spaces and . ' - (names are shown on pages, in MQTT and Home Assistant), in NFC
    form (an accent typed as a combining mark becomes one letter, as most keyboards send it)."""
    name = unicodedata.normalize("NFC", name).strip()
    shown = repr(name[:MAX_NAME + 8])
    if not name:
        raise BadName("a name cannot be empty")
    if len(name) > MAX_NAME:
        raise BadName(f"name {shown}: longer than {MAX_NAME} characters")
    bad = sorted({c for c in name if not (c.isalnum() or c in NAME_PUNCTUATION)})
    if bad:
        raise BadName(f"name {shown}: {''.join(bad)!r} not allowed (letters, digits, spaces and . ' - only)")
    if name.casefold() == UNKNOWN:
        raise BadName(f"name {shown}: reserved for faces nobody has named")
    return name


@dataclass(frozen=True)
class Entry:
    name: str
    faces: int
    created: float


@dataclass(frozen=True)
class Face:
    """One enrolled face, without its descriptor."""
    id: int
    name: str
    source: str
    created: float
    thumbnail: bool  # a JPEG is stored with it


@dataclass(frozen=True)
class Match:
    name: str  # UNKNOWN when nothing is within the threshold
    distance: float  # to the nearest gallery face; -1 when the gallery is empty


class Snapshot:
    """The gallery's faces at one moment, for nearest-neighbour matching."""

    def __init__(self, names: list[str], descriptors: np.ndarray):
        self.names = names
        self.descriptors = descriptors.reshape(-1, DIM).astype(np.float32)

    def __len__(self) -> int:
        return len(self.names)

    def match(self, descriptor: np.ndarray, threshold: float) -> Match:
        """The nearest enrolled face names the descriptor if it is within `threshold`."""
        if not self.names:
            return Match(UNKNOWN, -1.0)
        distances = np.linalg.norm(self.descriptors - np.asarray(descriptor, np.float32).reshape(1, DIM), axis=1)
        best = int(np.argmin(distances))
        distance = float(distances[best])
        return Match(self.names[best] if distance <= threshold else UNKNOWN, distance)


class Gallery:
    """One open gallery file; `create=True` makes it (and its directory) when absent."""

    def __init__(self, path: str | os.PathLike, create: bool = False, read_only: bool = False):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise GalleryError(f"gallery {self.path}: no such file (enrol someone with `facetrack enroll`)")
        if read_only:  # a reader beside the identity service, which owns the file (the live view's pages)
            try:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
                self._thumbnails = self.db.execute(  # a gallery made before thumbnails has no such table
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'thumbnails'").fetchone() is not None
            except sqlite3.Error as e:
                raise GalleryError(f"gallery {self.path}: not a usable gallery ({e})") from None
            return
        try:
            if create:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            private_file(self.path)  # SQLite gives its journal files the database's mode
        except OSError as e:
            raise GalleryError(f"gallery {self.path}: cannot create ({e.strerror})") from None
        self.db = sqlite3.connect(self.path, timeout=5.0)
        self._thumbnails = True
        try:
            self.db.execute("PRAGMA secure_delete = ON")  # deleted faces are overwritten, not just unlinked
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
            if row is None:
                with self.db:
                    self.db.execute("INSERT INTO meta VALUES ('model', ?)", (MODEL,))
            elif row[0] != MODEL:
                raise GalleryError(f"gallery {self.path}: made with descriptor model {row[0]!r}, "
                                   f"this is {MODEL!r}; enrol again into a new gallery")
        except GalleryError:
            self.db.close()
            raise
        except sqlite3.Error as e:
            self.db.close()
            raise GalleryError(f"gallery {self.path}: not a usable gallery ({e})") from None

    def add(self, name: str, descriptors: np.ndarray, sources: list[str],
            thumbnails: list[bytes | None] | None = None) -> int:
        """Store one descriptor per source under `name`; returns how many faces `name` has now."""
        try:
            name = check_name(name)
        except BadName as e:
            raise BadName(f"gallery {self.path}: {e}") from None
        descriptors = np.asarray(descriptors, np.float32).reshape(-1, DIM)
        thumbnails = thumbnails or [None] * len(sources)
        if not len(descriptors) == len(sources) == len(thumbnails):
            raise ValueError("one source (and thumbnail) per descriptor")
        now = time.time()
        try:
            with self.db:
                for d, s, t in zip(descriptors, sources, thumbnails):
                    face = self.db.execute("INSERT INTO faces (name, descriptor, source, created) VALUES (?, ?, ?, ?)",
                                           (name, d.tobytes(), s, now)).lastrowid
                    if t is not None:
                        self.db.execute("INSERT INTO thumbnails (face_id, jpeg) VALUES (?, ?)", (face, t))
            return self.db.execute("SELECT COUNT(*) FROM faces WHERE name = ?", (name,)).fetchone()[0]
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot write ({e})") from None

    def remove(self, name: str) -> int:
        """Delete every face of `name`, leaving none of their bytes in the files; returns how many were deleted."""
        try:
            with self.db:
                self.db.execute("DELETE FROM thumbnails WHERE face_id IN (SELECT id FROM faces WHERE name = ?)", (name,))
                removed = self.db.execute("DELETE FROM faces WHERE name = ?", (name,)).rowcount
            self._checkpoint()
            return removed
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot write ({e})") from None

    def rename(self, name: str, new_name: str) -> int:
        """Every face of `name` becomes `new_name`'s (joining theirs if they exist); returns how many."""
        try:
            new_name = check_name(new_name)
        except BadName as e:
            raise BadName(f"gallery {self.path}: {e}") from None
        try:
            with self.db:
                return self.db.execute("UPDATE faces SET name = ? WHERE name = ?", (new_name, name)).rowcount
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot write ({e})") from None

    def faces(self) -> list[Face]:
        """Every face, by name then age, without descriptors."""
        try:
            thumbnail = "EXISTS (SELECT 1 FROM thumbnails WHERE face_id = id)" if self._thumbnails else "0"
            rows = self.db.execute(f"SELECT id, name, source, created, {thumbnail} FROM faces "
                                   "ORDER BY name, id").fetchall()
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot read ({e})") from None
        return [Face(i, n, s, c, bool(t)) for i, n, s, c, t in rows]

    def thumbnail(self, face_id: int) -> bytes | None:
        if not self._thumbnails:
            return None
        try:
            row = self.db.execute("SELECT jpeg FROM thumbnails WHERE face_id = ?", (face_id,)).fetchone()
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot read ({e})") from None
        return None if row is None else row[0]

    def _checkpoint(self) -> None:
        """A WAL gallery: fold the -wal file (old pages, the deleted faces too) into the file and truncate it.

        A reader in the middle of a read holds the old pages: wait a little for it (the identity
        service reads in milliseconds), then say so. A rollback-journal gallery has nothing to do.
        """
        for _ in range(CHECKPOINT_TRIES):
            busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
        log.warning("gallery %s: a reader keeps it open; the removed faces stay in %s-wal until it lets go",
                    self.path, self.path.name)

    def entries(self) -> list[Entry]:
        try:
            rows = self.db.execute("SELECT name, COUNT(*), MIN(created) FROM faces GROUP BY name ORDER BY name")
            return [Entry(*row) for row in rows]
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot read ({e})") from None

    def snapshot(self) -> Snapshot:
        try:
            rows = self.db.execute("SELECT name, descriptor FROM faces ORDER BY id").fetchall()
        except sqlite3.Error as e:
            raise GalleryError(f"gallery {self.path}: cannot read ({e})") from None
        bad = [name for name, blob in rows if len(blob) != DIM * 4]
        if bad:
            raise GalleryError(f"gallery {self.path}: damaged descriptor(s) for {sorted(set(bad))}")
        return Snapshot([name for name, _ in rows], np.frombuffer(b"".join(b for _, b in rows), np.float32))

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GalleryWatcher:
    """The service's view of the gallery: reloaded when the file changes, never fatal.

    `poll()` returns a new Snapshot when the file changed and could be read, else None. A
    missing or broken file logs one line (once per change) and leaves the last good
    snapshot in place (an empty one at start), so the service keeps running.
    """

    def __init__(self, path: str | os.PathLike, period_s: float):
        self.path = Path(path)
        self.period_s = period_s
        self.snapshot = Snapshot([], np.zeros((0, DIM), np.float32))
        self._stamp: tuple | None = None
        self._next = 0.0

    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def poll(self, now: float | None = None, force: bool = False) -> Snapshot | None:
        """`force`: look at the file now (this process just wrote it), not at the next period."""
        now = time.monotonic() if now is None else now
        if now < self._next and not force:
            return None
        self._next = now + self.period_s
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        if stamp is None:
            log.warning("gallery %s: no such file; every face stays unknown until someone is enrolled", self.path)
            return None
        try:
            with Gallery(self.path) as gallery:
                snapshot = gallery.snapshot()
        except GalleryError as e:
            log.error("%s; keeping the previous gallery (%d faces)", e, len(self.snapshot))
            return None
        self.snapshot = snapshot
        log.info("gallery %s: loaded %d faces of %d people", self.path, len(snapshot), len(set(snapshot.names)))
        return snapshot
