"""`facetrack gallery remove` leaves no byte of the person's faces in the gallery's files.

A person is added with distinctive descriptors (and name), another person beside them; the
real command removes the first in its own process; then every file of the gallery (the
database and any -journal or -wal beside it) is searched for the removed descriptors' float32
bytes and name: none is found, while the remaining person's are (so the search finds what is
there). Run with the default rollback journal and with a gallery someone switched to WAL,
with a reader's connection open as the identity service may have it. The control: an ordinary
DELETE (secure_delete off, as many SQLite builds have it by default) leaves the bytes, and the
same search finds them.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from common.config import ROOT
from common.gallery import DIM, Gallery

REMOVED, KEPT = "Ada Lovelace 7f3a", "Grace Hopper 91c2"


def gallery_bytes(path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def two_people(path, journal: str) -> tuple[sqlite3.Connection, np.ndarray, np.ndarray]:
    """A gallery of REMOVED (3 faces) between KEPT's (2), and a reader that has read it (left open)."""
    rng = np.random.default_rng(7)
    removed, kept = rng.normal(0, 0.1, (3, DIM)).astype(np.float32), rng.normal(0, 0.1, (2, DIM)).astype(np.float32)
    reader = sqlite3.connect(path)  # open, so a WAL file is not folded back when the writer closes
    reader.execute(f"PRAGMA journal_mode = {journal}")
    with Gallery(path, create=True) as gallery:
        gallery.add(KEPT, kept[:1], ["kept-1.jpg"])
        gallery.add(REMOVED, removed, [f"removed-{i}.jpg" for i in range(3)])
        gallery.add(KEPT, kept[1:], ["kept-2.jpg"])
    assert reader.execute("SELECT COUNT(*) FROM faces").fetchone() == (5,)
    before = gallery_bytes(path)
    assert all(d.tobytes() in before for d in removed) and REMOVED.encode() in before
    return reader, removed, kept


def test_the_search_finds_what_a_plain_delete_leaves(tmp_path):
    path = tmp_path / "gallery.sqlite"
    reader, removed, _ = two_people(path, "delete")
    plain = sqlite3.connect(path)
    plain.execute("PRAGMA secure_delete = OFF")
    with plain:
        assert plain.execute("DELETE FROM faces WHERE name = ?", (REMOVED,)).rowcount == 3
    plain.close()
    assert all(d.tobytes() in gallery_bytes(path) for d in removed)
    reader.close()


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_removed_faces_leave_no_bytes_in_the_files(tmp_path, journal):
    path = tmp_path / "gallery.sqlite"
    reader, removed, kept = two_people(path, journal)
    out = subprocess.run([sys.executable, "-m", "facetrack.cli", "gallery", "remove", REMOVED, "--gallery", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "removed" in out.stdout, out.stderr
    after = gallery_bytes(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith("-wal") and p.stat().st_size] == []
    assert not any(d.tobytes() in after for d in removed), "a removed descriptor is still in the gallery's files"
    assert REMOVED.encode() not in after
    assert all(d.tobytes() in after for d in kept) and KEPT.encode() in after
    assert reader.execute("SELECT DISTINCT name FROM faces").fetchall() == [(KEPT,)]
    reader.close()


def test_removal_beside_an_open_connection_leaves_no_bytes_in_the_wal(tmp_path):
    """An open connection in the same process keeps the -wal file past the writer's close: the checkpoint empties it."""
    path = tmp_path / "gallery.sqlite"
    reader, removed, kept = two_people(path, "wal")
    with Gallery(path) as gallery:
        assert gallery.remove(REMOVED) == 3
    assert (tmp_path / "gallery.sqlite-wal").stat().st_size == 0
    after = gallery_bytes(path)
    assert not any(d.tobytes() in after for d in removed) and REMOVED.encode() not in after
    assert all(d.tobytes() in after for d in kept)
    reader.close()


def test_a_removed_persons_enrolment_thumbnails_leave_no_bytes_either(tmp_path):
    """The live view's pages store the JPEG a face was enrolled from in its row: removed with it."""
    path = tmp_path / "gallery.sqlite"
    rng = np.random.default_rng(3)
    jpeg = b"\xff\xd8" + rng.bytes(20000) + b"\xff\xd9"  # larger than a page: overflow pages are wiped too
    kept_jpeg = b"\xff\xd8" + rng.bytes(3000) + b"\xff\xd9"
    with Gallery(path, create=True) as gallery:
        gallery.add(REMOVED, rng.normal(0, 0.1, (1, DIM)), ["track 4"], [jpeg])
        gallery.add(KEPT, rng.normal(0, 0.1, (1, DIM)), ["track 5"], [kept_jpeg])
        pieces = [jpeg[i:i + 200] for i in range(0, len(jpeg) - 200, 1000)]  # across its overflow pages
        before = gallery_bytes(path)
        assert sum(p in before for p in pieces) >= len(pieces) - 5  # a piece may straddle a page header
        assert gallery.remove(REMOVED) == 1
    after = gallery_bytes(path)
    assert not any(p in after for p in pieces) and kept_jpeg in after
