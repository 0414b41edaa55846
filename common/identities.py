"""Who is on each track: the identity service's bookkeeping, free of I/O and models.

`IdentityBook` keeps the recent frames' tracks, matches a (late) detection to the tracks of
the frame it was computed on (IoU, one-to-one), and decides when a track's face is worth
embedding: the first usable view, then only a view whose quality beats the best so far by
`better_view`, at most `max_embeds_per_track` times. Each embedding keeps the track's
best descriptor and its gallery match; a new gallery re-matches every live track at once.
Tracks that leave the tracker's output are forgotten, and so is every track of a tracker run
that ended (common/runs.py): a new run numbers its tracks from 1 again, for other faces. Each
Identity names the run of its track.

The best descriptor of each live track, and of the last `ENDED` ended ones (an ended run's
too), can be taken out by tracker run and track id (`descriptor_of`): that is what naming a
face on the live view enrols.

Re-identification (`reid`): a forgotten track's descriptor is kept for `reid_window_s`; a new
track whose first descriptor lies within the threshold of one continues it (`same_as`), and
takes its name when the gallery does not name it by itself (an occluded first view of
someone already named a moment ago). Each departed track is continued at most once.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from common.config import IdentityConfig
from common.gallery import UNKNOWN, Match, Snapshot
from common.messages import Detections, Identity, Tracks
from common.recent import RecentMap
from common.runs import RunWatch
from common.tracking import associate

CONFIRMED = "confirmed"
ENDED = 64  # ended tracks whose best descriptor is kept, for naming a recent face


@dataclass(frozen=True)
class Departed:
    """A track that ended, kept for re-identification."""
    track_id: int
    descriptor: np.ndarray
    name: str
    t: float


@dataclass
class TrackIdentity:
    track_id: int
    embeds: int = 0
    best_quality: float = 0.0
    frame_id: int = -1  # the frame the kept descriptor was computed on
    descriptor: np.ndarray | None = None
    match: Match | None = None  # the gallery's answer for `descriptor`
    continues: Departed | None = None  # re-identified as this ended track
    reid_distance: float = -1.0

    @property
    def matched(self) -> Match:
        """The gallery's answer; set with the descriptor, so there is one from the first embedding on."""
        assert self.match is not None, f"track {self.track_id} has no embedding yet"
        return self.match

    @property
    def name(self) -> str:
        if self.matched.name == UNKNOWN and self.continues is not None:
            return self.continues.name
        return self.matched.name

    def message(self, t: float, run_id: int) -> Identity:
        by_reid = self.matched.name == UNKNOWN and self.continues is not None
        return Identity(track_id=self.track_id, frame_id=self.frame_id, name=self.name,
                        distance=self.reid_distance if by_reid else self.matched.distance, t=t,
                        same_as=-1 if self.continues is None else self.continues.track_id,
                        quality=self.best_quality, run_id=run_id)


@dataclass(frozen=True)
class Candidate:
    """A detection on `frame_id` matched to a track of tracker run `run_id`, with its view quality."""
    track_id: int
    frame_id: int
    det_index: int
    quality: float
    run_id: int = 0


class IdentityBook:
    def __init__(self, cfg: IdentityConfig, history: int):
        self.cfg = cfg
        self.tracks: collections.OrderedDict[int, list] = collections.OrderedDict()  # frame_id -> tracks
        self.history = history
        self.states: dict[int, TrackIdentity] = {}
        self.latest_frame = -1
        self.live: set[int] = set()
        self.run = RunWatch()  # the tracker run of the ids here
        self.departed: list[Departed] = []
        self.ended: RecentMap = RecentMap(ENDED)  # (tracker run, ended track id) -> its best descriptor

    def on_tracks(self, msg: Tracks) -> list[int]:
        """Remember the frame's tracks; forget tracks that are gone. Returns the forgotten ids."""
        before = self.run.run or 0  # the run of the tracks in self.states
        restarted = self.run.changed(msg.run_id)
        if restarted:  # the ids and frame ids of the earlier run mean nothing now
            self.tracks.clear()
            self.latest_frame, self.departed = -1, []
        self.tracks[msg.frame_id] = msg.tracks
        while len(self.tracks) > self.history:
            self.tracks.popitem(last=False)
        if msg.frame_id < self.latest_frame:
            return []
        self.latest_frame = msg.frame_id
        self.live = {t.id for t in msg.tracks}
        gone = [tid for tid in self.states if restarted or tid not in self.live]
        for tid in gone:
            state = self.states.pop(tid)
            if state.descriptor is not None:  # an ended run's tracks too: a recent face can still be named
                self.ended.remember((before, tid), state.descriptor)
            if self.cfg.reid and state.descriptor is not None and not restarted:
                self.departed.append(Departed(tid, state.descriptor, state.name, msg.t_tracked))
        self.departed = [d for d in self.departed if msg.t_tracked - d.t <= self.cfg.reid_window_s]
        return gone

    def descriptor_of(self, run_id: int, track_id: int) -> np.ndarray | None:
        """The best descriptor of track `track_id` of tracker run `run_id`, live or recently ended; None if
        its face was never embedded (an id alone is not enough: a new run numbers other faces from 1 again)."""
        state = self.states.get(track_id) if run_id == (self.run.run or 0) else None
        if state is not None:
            return state.descriptor
        return self.ended.get((run_id, track_id))

    def tracks_at(self, frame_id: int) -> list | None:
        """The tracks published for `frame_id`, or for the nearest earlier frame the tracker did."""
        if frame_id in self.tracks:
            return self.tracks[frame_id]
        earlier = [f for f in self.tracks if f <= frame_id]
        return self.tracks[max(earlier)] if earlier else None

    def candidates(self, msg: Detections, qualities: list[float]) -> list[Candidate]:
        """Detections of `msg` whose view is worth embedding for the confirmed track they match."""
        tracks = [t for t in (self.tracks_at(msg.frame_id) or []) if t.state == CONFIRMED]
        if not tracks or not msg.boxes:
            return []
        matches, _, _ = associate(np.array([t.box for t in tracks]), np.array(msg.boxes), self.cfg.match_iou)
        out = []
        for ti, di in matches:
            tid = tracks[ti].id
            if self.wants(tid, qualities[di]):
                out.append(Candidate(tid, msg.frame_id, di, qualities[di], self.run.run or 0))
        return out

    def wants(self, track_id: int, quality: float) -> bool:
        if quality <= 0:
            return False
        state = self.states.get(track_id)
        if state is None:
            return True
        return state.embeds < self.cfg.max_embeds_per_track and quality > state.best_quality * self.cfg.better_view

    def embedded(self, cand: Candidate, descriptor: np.ndarray, gallery: Snapshot, t: float) -> Identity | None:
        """Record an embedding of a still-live track; its Identity message, or None if the track is gone."""
        if cand.track_id not in self.live or cand.run_id != (self.run.run or 0):
            return None  # ended, or of an earlier tracker run
        state = self.states.setdefault(cand.track_id, TrackIdentity(cand.track_id))
        state.embeds += 1
        if cand.quality > state.best_quality:
            state.best_quality, state.frame_id, state.descriptor = cand.quality, cand.frame_id, descriptor
            state.match = gallery.match(descriptor, self.cfg.threshold)
        if state.embeds == 1 and self.departed:
            self._reidentify(state)
        return state.message(t, self.run.run or 0)

    def _reidentify(self, state: TrackIdentity) -> None:
        distances = [float(np.linalg.norm(d.descriptor - state.descriptor)) for d in self.departed]
        best = int(np.argmin(distances))
        if distances[best] <= self.cfg.threshold:
            state.continues, state.reid_distance = self.departed.pop(best), distances[best]

    def rematch(self, gallery: Snapshot, t: float) -> list[Identity]:
        """Match every live track again (new gallery); messages for those whose answer changed."""
        out = []
        for state in self.states.values():
            if state.descriptor is None:
                continue
            before = state.name
            state.match = gallery.match(state.descriptor, self.cfg.threshold)
            if state.name != before:
                out.append(state.message(t, self.run.run or 0))
        return out

    def current(self, t: float) -> list[Identity]:
        return [s.message(t, self.run.run or 0) for s in self.states.values() if s.match is not None]
