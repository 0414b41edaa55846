"""The SQLite gallery, its watcher in the service, and the `gallery` command's bad inputs."""
from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from common.gallery import MAX_NAME, BadName, Gallery, GalleryError, GalleryWatcher, check_name
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


@pytest.mark.parametrize("name, why", [("", "cannot be empty"), ("   ", "cannot be empty"),
                                       ("x" * (MAX_NAME + 1), f"longer than {MAX_NAME}"),
                                       ("<b>Eve</b>", "'/<>' not allowed"), ("a\nb", "not allowed"),
                                       ("Bob; DROP TABLE", "';' not allowed"), ("Unknown", "reserved"),
                                       ("\u202eevil", "not allowed")])
def test_names_people_cannot_have_are_one_line(name, why):
    with pytest.raises(BadName, match=why) as refused:
        check_name(name)
    assert "\n" not in str(refused.value)


def test_names_people_have_pass(tmp_path):
    for name in ("Ada", "Zoë O'Brien-Smith", "李小龍", "J. R. R. Tolkien 3", "x" * MAX_NAME):
        assert check_name(f" {name} ") == name
    assert check_name("Zoe\u0308") == "Zo\u00eb"  # a combining diaeresis, as one letter
    with Gallery(tmp_path / "g.sqlite", create=True) as g:
        with pytest.raises(BadName, match="not allowed"):
            g.add("<script>", descriptors(1), ["x.jpg"])
        assert g.entries() == []


def test_rename_thumbnails_and_a_read_only_reader(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gallery(path, create=True) as g:
        g.add("alice", descriptors(1), ["track 3"], [b"\xff\xd8a"])
        g.add("bob", descriptors(1, seed=1), ["b.jpg"])
        assert g.rename("alice", "Alice Liddell") == 1
        assert g.rename("nobody", "Eve") == 0
        with pytest.raises(BadName):
            g.rename("bob", "unknown")
    with Gallery(path, read_only=True) as g:
        faces = g.faces()
        assert [(f.name, f.source, f.thumbnail) for f in faces] == [("Alice Liddell", "track 3", True), ("bob", "b.jpg", False)]
        assert g.thumbnail(faces[0].id) == b"\xff\xd8a" and g.thumbnail(faces[1].id) is None
        with pytest.raises(GalleryError, match="cannot write"):
            g.add("carol", descriptors(1, seed=2), ["c.jpg"])


def test_a_gallery_from_before_thumbnails_is_read_and_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE faces (id INTEGER PRIMARY KEY, name TEXT NOT NULL, descriptor BLOB NOT NULL,"
                     " source TEXT NOT NULL, created REAL NOT NULL);")
    db.execute("INSERT INTO meta VALUES ('model', ?)", (__import__("common.gallery").gallery.MODEL,))
    db.execute("INSERT INTO faces (name, descriptor, source, created) VALUES ('alice', ?, 'a.jpg', 1.0)",
               (descriptors(1).tobytes(),))
    db.commit()
    db.close()
    with Gallery(path, read_only=True) as g:  # a reader never changes the file
        assert [(f.name, f.thumbnail) for f in g.faces()] == [("alice", False)]
        assert g.thumbnail(1) is None
    with Gallery(path) as g:  # the owner adds the table
        g.add("bob", descriptors(1, seed=1), ["track 2"], [b"\xff\xd8b"])
        assert [(f.name, f.thumbnail) for f in g.faces()] == [("alice", False), ("bob", True)]
