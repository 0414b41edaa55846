"""The SQLite gallery, its watcher in the service, and the `gallery` command's bad inputs."""
from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from common.gallery import Gallery, GalleryError, GalleryWatcher
from facetrack.identity_cli import main as cli


def descriptors(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)


def test_add_list_remove_and_nearest_match(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gallery(path, create=True) as g:
        assert g.add("alice", descriptors(2), ["a1.jpg", "a2.jpg"]) == 2
        assert g.add("bob", descriptors(1, seed=1), ["b.jpg"]) == 1
        assert [(e.name, e.faces) for e in g.entries()] == [("alice", 2), ("bob", 1)]
        snap = g.snapshot()
    assert snap.match(descriptors(2)[1] + 0.01, 0.5).name == "alice"
    assert snap.match(descriptors(1, seed=1)[0], 0.5).distance == pytest.approx(0, abs=1e-6)
    assert snap.match(descriptors(1, seed=7)[0], 0.5).name == "unknown"
    with Gallery(path) as g:
        assert g.remove("alice") == 2
        assert g.remove("alice") == 0
        assert [e.name for e in g.entries()] == ["bob"]


def test_unusable_files_raise_one_line(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    for path, words in ((junk, "not a usable gallery"), (tmp_path / "absent.sqlite", "no such file")):
        with pytest.raises(GalleryError, match=words) as err:
            Gallery(path)
        assert "\n" not in str(err.value)
    other = tmp_path / "other.sqlite"
    with Gallery(other, create=True):
        pass
    with sqlite3.connect(other) as db:
        db.execute("UPDATE meta SET value = 'another-model' WHERE key = 'model'")
    with pytest.raises(GalleryError, match="another-model"):
        Gallery(other)


def test_watcher_reloads_on_change_and_keeps_the_last_good_gallery(tmp_path, caplog):
    path = tmp_path / "g.sqlite"
    watcher = GalleryWatcher(path, period_s=0.0)
    assert watcher.poll() is None and len(watcher.snapshot) == 0  # absent: empty, not fatal
    with Gallery(path, create=True) as g:
        g.add("alice", descriptors(1), ["a.jpg"])
    assert watcher.poll().names == ["alice"]
    assert watcher.poll() is None  # unchanged file: no reload
    path.write_bytes(b"garbage" * 1000)
    os.utime(path, ns=(1, 1))
    assert watcher.poll() is None
    assert watcher.snapshot.names == ["alice"]
    assert "keeping the previous gallery" in caplog.text


def test_gallery_command_bad_inputs_exit_nonzero_with_one_line(tmp_path, capsys, caplog):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage" * 100)
    assert cli(["gallery", "list", "--gallery", str(junk)]) == 1
    assert cli(["gallery", "remove", "nobody", "--gallery", str(tmp_path / "absent.sqlite")]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and all("\n" not in e for e in errors), errors
    assert "not a usable gallery" in errors[0] and "no such file" in errors[1]
    assert capsys.readouterr().out == ""
