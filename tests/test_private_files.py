"""What a stack creates is its user's only: checked with os.stat on the real objects.

A whole stack under supervisord (started with umask 077, as `make run` does), its run directory
made 0755 beforehand: the services tighten it to 0700; the bus sockets, the ring segment, the
recorder's files and the logs are owner-only. The gallery file and its journals are 0600 even
when the process that makes them has the usual 022 umask, and an older 0644 gallery is tightened.
"""
from __future__ import annotations

import os
import sqlite3
import stat

import numpy as np
import pytest

from common.gallery import DIM, Gallery
from facetrack.stack import Stack
from mqtt_support import free_port
from stack_support import unique_id, wait_for


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the test process's umask (restored after)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_a_running_stack_keeps_its_files_to_its_user(tmp_path, umask):
    overrides = {"stack": {"id": unique_id("private", tmp_path)}, "capture": {"source": "faces://1", "fps": 10},
                 "sink": {"http_port": free_port()}, "monitor": {"prometheus_port": 0}}
    with Stack(tmp_path / "run", overrides, autostart={"sink-recorder": True}) as stack:
        stack.run_dir.chmod(0o755)
        umask(0o077)  # as `make run` starts supervisord
        stack.start(wait_for=("broker", "capture", "sink-recorder"))
        umask(0o022)
        records = wait_for(lambda: [p for p in stack.run_dir.glob("records/**/*") if p.is_file() and p.stat().st_size],
                           60, what="the recorder's files")
        ring = f"{stack.config.ring.shm_dir}/{stack.config.ring_name}"
        wait_for(lambda: os.path.exists(ring), 30, what="the ring segment")
        found = {
            "run dir": mode(stack.run_dir),
            "bus-pub.sock": mode(stack.run_dir / "bus-pub.sock"),
            "bus-sub.sock": mode(stack.run_dir / "bus-sub.sock"),
            "supervisor.sock": mode(stack.run_dir / "supervisor.sock"),
            "ring": mode(ring),
            "records dirs": {mode(p) for p in stack.run_dir.glob("records/**") if p.is_dir()},
            "records files": {mode(p) for p in records},
            "logs": {mode(p) for p in (stack.run_dir / "logs").iterdir()},
        }
    assert found == {"run dir": 0o700, "bus-pub.sock": 0o600, "bus-sub.sock": 0o600, "supervisor.sock": 0o700,
                     "ring": 0o600, "records dirs": {0o700}, "records files": {0o600}, "logs": {0o600}}, found


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_the_gallery_and_its_journals_are_0600(tmp_path, umask, journal):
    path = tmp_path / "new" / "gallery.sqlite"
    with Gallery(path, create=True) as gallery:
        gallery.db.execute(f"PRAGMA journal_mode = {journal}")
        gallery.db.execute("BEGIN IMMEDIATE")
        gallery.db.execute("INSERT INTO faces (name, descriptor, source, created) VALUES ('a', ?, 's', 0)",
                           (np.zeros(DIM, np.float32).tobytes(),))
        gallery.db.execute("UPDATE meta SET value = value")  # pages are changed: the journal exists now
        files = {p.name: mode(p) for p in path.parent.iterdir()}
        gallery.db.rollback()
    assert mode(path.parent) == 0o700
    expected = {"gallery.sqlite", "gallery.sqlite-journal"} if journal == "delete" else \
        {"gallery.sqlite", "gallery.sqlite-wal", "gallery.sqlite-shm"}
    assert files == {name: 0o600 for name in expected}, files


def test_an_older_world_readable_gallery_is_tightened(tmp_path):
    path = tmp_path / "gallery.sqlite"
    sqlite3.connect(path).close()
    Gallery(path, create=True).close()
    path.chmod(0o644)
    Gallery(path).close()
    assert mode(path) == 0o600
