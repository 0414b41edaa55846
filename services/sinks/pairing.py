"""Pairs each `Tracks` message with the `Frame` message of the same frame id.

Tracks for frame k arrive after Frame k (tracker latency), so frames wait in a small
dict until their tracks come. Every tracks frame id of a tracker run (common/runs.py) from
the first one seen is accounted for exactly once: paired, or dropped as a gap (the tracker skipped it or the bus lost it),
as missing (its Frame message never came, or fell out of the dict) or as skipped (by a
sink that handles only the newest frame). Frames whose
tracks never come leave the dict silently: the gap in tracks ids has counted them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from common.messages import Frame, Tracks
from common.runs import RunWatch

if TYPE_CHECKING:
    from services.sinks.snapshots import Snapshot, SnapshotBook


@dataclass
class Paired:
    """One frame with its tracks; `image` is None for sinks that need no pixels. `names`:
    track id -> the identity service's latest name for it (ids it never named are absent);
    `snapshots`: the loop's face snapshots (snapshots.py; None unless the sink wants them)."""
    frame: Frame
    tracks: Tracks
    image: np.ndarray | None = None
    names: dict[int, str] = field(default_factory=dict)
    snapshots: SnapshotBook | None = None

    @property
    def pixels(self) -> np.ndarray:
        """The image, for a sink that declared needs_pixels (the loop then always reads it)."""
        assert self.image is not None, "no pixels: the sink does not declare needs_pixels"
        return self.image

    def snapshot(self, key: str) -> Snapshot | None:
        """The snapshot of the track `key` (common/runs.py's track_key)."""
        return None if self.snapshots is None else self.snapshots.get(key)

    def record(self, t_sink: float) -> dict:
        """The JSON form shared by the recorder's tracks.jsonl and the live view's /tracks.json."""
        return {
            "frame_id": self.frame.frame_id,
            "source_pos": self.frame.source_pos,
            "t_capture": self.tracks.t_capture,
            "t_tracked": self.tracks.t_tracked,
            "t_sink": t_sink,
            "tracks": [{"id": t.id, "box": list(t.box), "score": t.score, "state": t.state, "age": t.age,
                        **({"name": self.names[t.id]} if t.id in self.names else {})}
                       for t in self.tracks.tracks],
        }


class FramePairer:
    """Holds at most `capacity` Frame messages by frame id; counts what cannot be paired."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.frames: dict[int, Frame] = {}
        self.last_tracks_id: int | None = None
        self.run = RunWatch()
        self.gap = 0
        self.missing = 0
        self.skipped = 0

    def add_frame(self, frame: Frame) -> None:
        self.frames[frame.frame_id] = frame
        while len(self.frames) > self.capacity:
            del self.frames[next(iter(self.frames))]  # dicts keep insertion order: the oldest

    def match(self, tracks: Tracks) -> Frame | None:
        """The Frame of `tracks`, or None (counted in `missing`); older frames are forgotten."""
        frame = self._advance(tracks)
        if frame is None:
            self.missing += 1
        return frame

    def skip(self, tracks: Tracks) -> None:
        """Account for `tracks` as skipped (a viewer behind handles only the newest)."""
        self._advance(tracks)
        self.skipped += 1

    def _advance(self, tracks: Tracks) -> Frame | None:
        k = tracks.frame_id
        if self.run.changed(tracks.run_id):
            self.last_tracks_id = None  # a new run: its frame ids are counted from its first
        last = self.last_tracks_id
        if last is not None and k > last + 1:
            self.gap += k - last - 1
        self.last_tracks_id = k
        frame = self.frames.pop(k, None)
        for old in [i for i in self.frames if i < k]:
            del self.frames[old]
        return frame

    @property
    def dropped(self) -> int:
        return self.gap + self.missing + self.skipped
