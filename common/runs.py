"""One notion of "a run", for every consumer of the bus.

Frame ids count from 0 in each capture run and track ids from 1 in each tracker run, so a
number alone does not name a frame or a track across restarts. Each run has an id of its own:
capture's ring id (`Frame.ring_id`, a new ring per capture start) and the tracker's run id
(`Tracks.run_id`, new at every tracker start and whenever the capture run it follows changes,
as its tracks then start afresh). Within one tracker run frame ids only grow and a track id
names one face. A consumer watches the run of what it keys by with a `RunWatch` and forgets
that state when the run changes; one that keeps a track beyond its run (a snapshot file, an
MQTT event, a face named on the live view) names it by `track_key`, which `parse_track_key`
reads back.
"""
from __future__ import annotations

import os
import re

TRACK_KEY = r"[0-9a-f]{16}-\d{1,9}"  # what track_key writes (for URL patterns and checks of input)


def new_run_id() -> int:
    """A random id for a new run (63 bits: fits msgpack's int64)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def track_key(run_id: int, track_id: int) -> str:
    """A track's name beyond its run: the run in hex, then the id ("3fa2c1e0d4b59e07-12")."""
    return f"{run_id:016x}-{track_id}"


def parse_track_key(key: str) -> tuple[int, int] | None:
    """The (run id, track id) a track_key names; None for anything else."""
    if not re.fullmatch(TRACK_KEY, key):
        return None
    run, track = key.split("-")
    return int(run, 16), int(track)


class RunWatch:
    """Tells when the run of a stream of messages changes: `changed(run_id)` is True when it is
    not the run of the previous call (never on the first)."""

    def __init__(self) -> None:
        self.run: int | None = None

    def changed(self, run_id: int) -> bool:
        changed = self.run is not None and run_id != self.run
        self.run = run_id
        return changed
