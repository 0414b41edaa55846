"""TrackManager: correlation trackers between detections, detections correcting them.

Late detections. The detector is slower than the camera, so a detection names the frame it
was computed on (k) and reaches us at a later frame (t). Each track keeps its box for the last
`cfg.history` frames; the detection is matched against the boxes the tracks had AT frame k
(matching it against the current boxes would compare positions d frames apart and break on
any motion). A matched correction is then carried forward: the detection box is moved by the
track's own motion from k to t (centre shift, and scale ratio for trackers that scale), and a
tracker that needs it is re-initialised there on the current image. The alternative, keeping
old frames and re-tracking from k to t, costs d tracker updates and a frame buffer per face.
A new face has no motion of its own yet: it starts at its detection box as is, and probation
(`min_hits`) keeps a badly placed newcomer from being published before a second detection.

A detection that a track in flight has already absorbed must not correct it twice, so a
correction is applied to the track's history from frame k on as well.

Association, ByteTrack's two stages: detections scoring at least `start_score` (the
detector's own `score_threshold`: what it calls a face) are matched first, by IoU +
Hungarian at `match_iou`, then by centre distance for published tracks and detections IoU
left unpaired (a face that turned, a tracker that drifted or froze); its gate (`rematch_dist`
face sizes, so it scales with the face) widens by tracker.rematch_growth per second the track went
unseen (the same gate at 10 fps as at 30), up to tracker.rematch_max times. Detections between
`low_score` and `start_score` then only keep published tracks left unmatched (a half-hidden
face the detector is unsure of); they never start one. Each track has a constant-velocity
Kalman filter (`motion`): a lost track (the detector missed it and no correlation tracker
follows it) moves with its predicted box between detections, for matching and display.

Schedule (`schedule`): the tracker measures what a detection costs (`detector_cost`, the
detector's reported latency) and what each correlation-tracker update costs. When the
detector has a core of its own, or detecting is the cheaper, `detect_interval` is 1,
matched faces keep their latest detection's box and a correlation tracker starts only on a
face the detector missed, learnt on the last image it was confidently seen on, to bridge the
miss. Otherwise every face is tracked and the adaptive interval applies.

Track life: tentative until `min_hits` detections matched it (never published; dropped at
its first unmatched detection), then confirmed. A tracker that reports failure, or whose box
is mostly outside the image, stops; a track the detector misses while it touches the image
border has left the view (no tracker is kept on it: no sliver glued to the edge). Such a
track coasts on the Kalman prediction and is "lost" until a detection matches it again (with
kind "none" a track the detector missed is lost); a lost track overlapping a confirmed one,
or mostly outside the image, is not published. A track is ended after `max_lost_s` seconds
without a matched detection; within that buffer a returning face keeps its ID, and a
tracker that still follows a face the detector misses (occluded, turned away) keeps it
confirmed. Drift: at each detection, a matched track whose box at frame k overlaps its
detection by less than `drift_iou` is re-initialised from the detection. Re-inits, tracker
failures and new faces make the adaptive interval shrink (see `interval`).
"""
from __future__ import annotations

import collections
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from common.config import TrackerConfig
from common.messages import Track

from .association import associate, associate_by_centre, box_iou, iou_matrix
from .interval import DetectInterval
from .motion import ConstantVelocity
from .schedule import CostSchedule
from .trackers import BoxTracker, create_tracker

log = logging.getLogger(__name__)

TENTATIVE, CONFIRMED, LOST = "tentative", "confirmed", "lost"
MIN_INSIDE = 0.5      # a box with less of its area inside the image has left it
EDGE_PX = 2.0         # a box this close to the image border touches it
CROP_PAD = 1.5        # appearance kept for bridging: the box grown by this much each side (KCF's padding)


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """Faces found on frame `frame_id`: boxes (N, 4) xyxy pixels, scores (N,)."""
    frame_id: int
    boxes: np.ndarray
    scores: np.ndarray


def carry_forward(box: np.ndarray, then: np.ndarray, det_box: np.ndarray) -> np.ndarray:
    """`box` corrected by what a detection said about an earlier frame: the track was at
    `then` where the detector saw `det_box`; move the centre by that error and scale the
    size by that ratio. Applied to the current box, this is the detection carried forward
    by the track's own motion since then. (Scalar code: 7x faster than numpy on 4 numbers.)"""
    bx1, by1, bx2, by2 = box.tolist()
    tx1, ty1, tx2, ty2 = then.tolist()
    dx1, dy1, dx2, dy2 = det_box.tolist()
    cx, cy = (bx1 + bx2 + dx1 + dx2 - tx1 - tx2) / 2, (by1 + by2 + dy1 + dy2 - ty1 - ty2) / 2
    hw = (bx2 - bx1) * (dx2 - dx1) / max(tx2 - tx1, 1e-6) / 2
    hh = (by2 - by1) * (dy2 - dy1) / max(ty2 - ty1, 1e-6) / 2
    return np.array((cx - hw, cy - hh, cx + hw, cy + hh))


def inside_fraction(box: np.ndarray, shape: tuple) -> float:
    """Share of the box's area that lies inside an image of `shape`."""
    h, w = shape[:2]
    x1, y1, x2, y2 = box.tolist()
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    inner = max(0.0, min(x2, w) - max(x1, 0.0)) * max(0.0, min(y2, h) - max(y1, 0.0))
    return inner / area if area > 0 else 0.0


def touches_edge(box: np.ndarray, shape: tuple) -> bool:
    h, w = shape[:2]
    x1, y1, x2, y2 = box.tolist()
    return x1 <= EDGE_PX or y1 <= EDGE_PX or x2 >= w - EDGE_PX or y2 >= h - EDGE_PX


class _Track:
    __slots__ = ("id", "tracker", "box", "score", "hits", "since_match", "state", "born", "history", "motion",
                 "seen")

    def __init__(self, track_id: int, tracker, box: np.ndarray, score: float, frame_id: int, history: int):
        self.id, self.tracker, self.box, self.score = track_id, tracker, box, score
        self.hits, self.since_match, self.state, self.born = 1, 0, TENTATIVE, frame_id
        self.history: collections.deque = collections.deque(maxlen=history)
        self.motion = ConstantVelocity(box)
        self.seen: tuple[np.ndarray, tuple[int, int], np.ndarray] | None = None  # crop, its origin, the box

    def box_at(self, frame_id: int) -> np.ndarray:
        """The box this track had at `frame_id` (the latest recorded at or before it)."""
        for fid, box in reversed(self.history):
            if fid <= frame_id:
                return box
        return self.history[0][1]

    def record(self, frame_id: int) -> None:
        if self.history and self.history[-1][0] == frame_id:
            self.history[-1] = (frame_id, self.box)
        else:
            self.history.append((frame_id, self.box))

    def correct(self, frame_id: int, then: np.ndarray, det_box: np.ndarray) -> None:
        """Apply a detection of `frame_id` to the box and to the history from that frame on,
        so that a later detection (already in flight) is compared with corrected boxes
        and the same error is not corrected twice."""
        for i in range(len(self.history) - 1, -1, -1):
            fid, box = self.history[i]
            if fid < frame_id:
                break
            self.history[i] = (fid, carry_forward(box, then, det_box))
        self.box = self.history[-1][1]

    def remember(self, image: np.ndarray) -> None:
        """Keep the image around the box (for a correlation tracker started later, on a miss)."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = self.box.tolist()
        px, py = CROP_PAD * (x2 - x1), CROP_PAD * (y2 - y1)
        left, top = max(0, int(x1 - px)), max(0, int(y1 - py))
        right, bottom = min(w, int(x2 + px) + 1), min(h, int(y2 + py) + 1)
        if right - left >= 4 and bottom - top >= 4:
            self.seen = (image[top:bottom, left:right].copy(), (left, top), self.box.copy())


class TrackManager:
    """Faces with stable IDs from sparse, possibly late detections and per-frame trackers.

    Call `step()` once per frame, in frame order, with the detections that arrived since the
    last call (or None); `detector_cost(ms)` with each detection's measured latency. Ask
    `detect_interval` how often the detector should run. `fps` (the source's rate; the tracker
    service sets it as it learns it, common/tracking/rate.py) turns the config's seconds into
    frames, counted by frame id: frames the caller skipped count too; detections scoring
    `start_score` (the detector's `score_threshold`) or more start tracks, lower ones (down to
    `cfg.low_score`) only keep them. `cores`: the board's CPU count (more than one: the detector
    has a core of its own); `clock`: seconds, read around each correlation-tracker update to
    learn what tracking costs. Both are given, never read from the machine here: the live
    tracker passes os.cpu_count() and time.perf_counter, `facetrack eval` a board's count and a
    StepClock, so an evaluation gives the same tracks on any machine.
    """

    def __init__(self, cfg: TrackerConfig, fps: float = 30.0, start_score: float = 0.5, *, cores: int,
                 clock: Callable[[], float]):
        create_tracker(cfg.kind)  # fail at start on an unknown kind
        self.cfg, self.start_score = cfg, start_score
        self.fps = fps
        self.costs = CostSchedule(own_core=cores > 1)
        self.clock = clock
        self._next_id = 1
        self.reset()
        self.counters: dict[str, int] = dict.fromkeys((
            "frames", "detections_applied", "detections_stale", "late_frames", "reinits", "recoveries",
            "rematches", "low_score_matches", "bridges", "left_view", "failures", "tracks_started",
            "tracks_confirmed", "tracks_ended"), 0)

    def reset(self) -> None:
        """Forget every track and frame (e.g. frame ids restarted with the capture). IDs go on
        from where they were, so a consumer never sees one ID on two faces."""
        self._tracks: list[_Track] = []
        self._frame_id: int | None = None
        self._last_det_frame = -1
        self._pending: list[FrameDetections] = []
        self._failures_since_det = 0
        self._interval = DetectInterval(self.cfg.interval_min, self.cfg.interval_max, self.cfg.adaptive)

    @property
    def fps(self) -> float:
        return self._fps

    @fps.setter
    def fps(self, fps: float) -> None:
        self._fps = fps
        self.max_lost = int(round(self.cfg.max_lost_s * fps))

    def detector_cost(self, ms: float) -> None:
        """What one detection took (the detector's reported latency, ms)."""
        self.costs.detection(ms)

    @property
    def bridging(self) -> bool:
        """True while the detector should run on every frame it can (see `schedule`)."""
        return self.cfg.kind != "none" and self.cfg.adaptive and self.costs.detect_every_frame(
            sum(tr.state != TENTATIVE for tr in self._tracks))

    @property
    def detect_interval(self) -> int:
        """Frames between detector runs that the tracker wants now."""
        return self.cfg.interval_min if self.bridging else self._interval.value

    def step(self, frame_id: int, image: np.ndarray, detections: FrameDetections | None) -> list[Track]:
        """Advance to `frame_id` (BGR uint8 `image`); apply `detections` (of this or an earlier
        frame; one of a later frame is kept until that frame). Returns published tracks."""
        if self._frame_id is not None and frame_id <= self._frame_id:
            raise ValueError(f"frame {frame_id} is not after frame {self._frame_id}")
        elapsed = 1 if self._frame_id is None else frame_id - self._frame_id  # source frames since the last step
        self._frame_id = frame_id
        self.counters["frames"] += 1
        for tr in self._tracks:
            self._advance(tr, image, frame_id, elapsed)
        if detections is not None:
            self._pending.append(detections)
        due = [d for d in self._pending if d.frame_id <= frame_id]
        if due:
            self._pending = [d for d in self._pending if d.frame_id > frame_id]
            for det in sorted(due, key=lambda d: d.frame_id):
                self._apply(det, image, frame_id)
        self._end_stale()
        return self._published(frame_id, image.shape)

    def _published(self, frame_id: int, shape: tuple) -> list[Track]:
        """Confirmed tracks, and lost ones inside the image and not lying on a confirmed one
        (a box coasting out of view, or frozen over a face that is tracked, is noise)."""
        shown = [tr for tr in self._tracks if tr.state == CONFIRMED
                 or (tr.state == LOST and inside_fraction(tr.box, shape) >= MIN_INSIDE)]
        confirmed = np.array([tr.box for tr in shown if tr.state == CONFIRMED]).reshape(-1, 4)
        out = []
        for tr in shown:
            if tr.state == LOST and len(confirmed) and iou_matrix(tr.box, confirmed).max() > self.cfg.match_iou:
                continue
            state = typing.cast("Literal['confirmed', 'lost']", tr.state)  # shown holds no tentative one
            out.append(Track(tr.id, tr.box.tolist(), tr.score, state, frame_id - tr.born))
        return out

    def _advance(self, tr: _Track, image: np.ndarray, frame_id: int, elapsed: int) -> None:
        """One frame, `elapsed` source frames after the last: the Kalman prediction (the box of a
        lost track), then the correlation tracker where there is one (timed: its cost per face
        drives the schedule). Failure, or a box that has left the image, stops the tracker and
        marks the track lost."""
        tr.since_match += elapsed
        predicted = tr.motion.predict()
        if tr.tracker is not None:
            t0 = self.clock()
            box = tr.tracker.update(image)
            self.costs.tracker_update(1000 * (self.clock() - t0))
            if box is None or inside_fraction(box, image.shape) < MIN_INSIDE:
                self.counters["failures" if box is None else "left_view"] += 1
                self._failures_since_det += box is None
                tr.tracker = None
                tr.state = LOST if tr.state == CONFIRMED else tr.state
                tr.box = predicted
            else:
                tr.box = box
        elif tr.state == LOST:  # coasting: an unseen face moves on with its velocity
            tr.box = predicted
        # else a track followed by detections alone keeps its latest detection's box: carried on
        # by the velocity it moved off the face in real, shaky video (-9.5 HOTA on OTB-Boy-A)
        tr.record(frame_id)

    def _apply(self, det: FrameDetections, image: np.ndarray, frame_id: int) -> None:
        k = det.frame_id
        if k <= self._last_det_frame or frame_id - k >= self.cfg.history:
            log.debug("dropping detections of frame %d at frame %d (stale)", k, frame_id)
            self.counters["detections_stale"] += 1
            return
        self._last_det_frame = k
        self.counters["detections_applied"] += 1
        self.counters["late_frames"] += frame_id - k
        boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        high = np.flatnonzero(scores >= self.start_score)
        low = np.flatnonzero((scores < self.start_score) & (scores >= self.cfg.low_score))
        then = [tr.box_at(k) for tr in self._tracks]
        then_arr = np.array(then).reshape(-1, 4)
        matches, lone_tracks, new_dets = associate(then_arr, boxes[high], self.cfg.match_iou)
        matches, lone_tracks, new_dets = self._second_chance(matches, lone_tracks, new_dets, then, boxes[high])
        matches = [(ti, int(high[di])) for ti, di in matches]
        new_dets = [int(high[di]) for di in new_dets]
        matches, lone_tracks = self._low_score_stage(matches, lone_tracks, then_arr, boxes, low)
        unstable = bool(new_dets) or self._failures_since_det > 0
        self._failures_since_det = 0
        bridging = self.bridging
        for ti, di in matches:
            tr = self._tracks[ti]
            unstable |= self._correct(tr, k, boxes[di], then[ti], float(scores[di]), image, bridging)
        for ti in lone_tracks:
            self._missed(self._tracks[ti], image, bridging)
        for di in new_dets:
            self._start(boxes[di], float(scores[di]), k, image, frame_id, bridging)
        self._interval.update(unstable)

    def _low_score_stage(self, matches, lone_tracks, then, boxes, low):
        """ByteTrack's second stage: published tracks still unmatched against the low-score
        detections, by IoU only (an unsure detection must overlap to count)."""
        published = [ti for ti in lone_tracks if self._tracks[ti].state != TENTATIVE]
        if not published or not len(low):
            return matches, lone_tracks
        extra, _, _ = associate(then[published], boxes[low], self.cfg.match_iou)
        extra = [(published[a], int(low[b])) for a, b in extra]
        self.counters["low_score_matches"] += len(extra)
        paired = {t for t, _ in extra}
        return matches + extra, [t for t in lone_tracks if t not in paired]

    def _second_chance(self, matches, lone_tracks, new_dets, then, boxes):
        """Pair published tracks and detections that IoU left alone by centre distance; the
        gate widens by tracker.rematch_growth per second unseen (the longer a face was
        missed, the further it may have gone: turned away, walked behind something), up to
        tracker.rematch_max times its start."""
        published = [ti for ti in lone_tracks if self._tracks[ti].state != TENTATIVE]
        if not published or not new_dets or self.cfg.rematch_dist <= 0:
            return matches, lone_tracks, new_dets
        gate = [self.cfg.rematch_dist * min(1 + self.cfg.rematch_growth * self._tracks[ti].since_match / self.fps,
                                            self.cfg.rematch_max)
                for ti in published]
        extra, _, _ = associate_by_centre(np.array([then[ti] for ti in published]), boxes[new_dets], np.array(gate))
        extra = [(published[a], new_dets[b]) for a, b in extra]
        self.counters["rematches"] += len(extra)
        paired_t, paired_d = {t for t, _ in extra}, {d for _, d in extra}
        return (matches + extra, [t for t in lone_tracks if t not in paired_t],
                [d for d in new_dets if d not in paired_d])

    def _missed(self, tr: _Track, image: np.ndarray, bridging: bool) -> None:
        """A track no detection matched: probation ends; a face at the image edge has left
        (no tracker is kept on it); while bridging, a correlation tracker starts on the face
        from the last image it was seen on; without any tracker the track is lost."""
        if tr.state == TENTATIVE:
            tr.since_match = self.max_lost + 1  # probation failed: ended below
            return
        if touches_edge(tr.box, image.shape):
            if tr.tracker is not None or tr.state == CONFIRMED:
                self.counters["left_view"] += 1
            tr.tracker, tr.state = None, LOST
            return
        if bridging and tr.tracker is None and tr.state == CONFIRMED and tr.seen is not None:
            tr.tracker = self._bridge(tr, image)
        if tr.tracker is None:
            tr.state = LOST

    def _bridge(self, tr: _Track, image: np.ndarray):
        """A correlation tracker learnt on the face as last seen (its crop pasted into a frame
        of the current one), then moved to the current image: it follows the face while the
        detector cannot see it."""
        assert tr.seen is not None  # the caller checks
        crop, (left, top), seen_box = tr.seen
        canvas = image.copy()
        canvas[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
        tracker = self._correlation_tracker()
        t0 = self.clock()
        ok = tracker.init(canvas, seen_box)
        box = tracker.update(image) if ok else None
        self.costs.tracker_update(1000 * (self.clock() - t0) / 3)  # init = one update and a learn
        if box is None or inside_fraction(box, image.shape) < MIN_INSIDE:
            return None
        self.counters["bridges"] += 1
        tr.box = box
        return tracker

    def _correct(self, tr: _Track, k: int, det_box: np.ndarray, then: np.ndarray, score: float,
                 image: np.ndarray, bridging: bool) -> bool:
        """Apply a matched detection to a track; True if that took a re-initialisation."""
        tr.hits += 1
        tr.since_match = 0
        tr.score = score
        if tr.state == TENTATIVE and tr.hits >= self.cfg.min_hits:
            tr.state = CONFIRMED
            self.counters["tracks_confirmed"] += 1
        if self.cfg.kind == "none" or bridging:  # the box is the detection, carried as far as we know
            tr.correct(k, then, det_box)
            tr.motion.update(tr.box)
            tr.state = CONFIRMED if tr.state == LOST else tr.state
            tr.tracker = None  # a bridge ends where the detector sees the face again
            if bridging and score >= self.start_score:
                tr.remember(image)
            return False
        recovering = tr.tracker is None
        if not recovering and box_iou(then, det_box) >= self.cfg.drift_iou:
            tr.motion.update(carry_forward(tr.box, then, det_box))
            return False
        self.counters["recoveries" if recovering else "reinits"] += 1
        tr.state = CONFIRMED if tr.state == LOST else tr.state
        tr.correct(k, then, det_box)
        tr.motion.update(tr.box)
        tr.tracker = self._new_tracker(image, tr.box)
        if tr.tracker is None:
            tr.state = LOST if tr.state == CONFIRMED else tr.state
        return True

    def _correlation_tracker(self) -> BoxTracker:
        """A fresh tracker of the configured kind; only asked for when the kind is not "none"."""
        tracker = create_tracker(self.cfg.kind)
        assert tracker is not None, "tracker.kind none starts no correlation tracker"
        return tracker

    def _new_tracker(self, image: np.ndarray, box: np.ndarray):
        """A correlation tracker started on `box` (timed: init runs one update), or None."""
        tracker = self._correlation_tracker()
        t0 = self.clock()
        ok = tracker.init(image, box)
        self.costs.tracker_update(1000 * (self.clock() - t0) / 2)
        return tracker if ok else None

    def _start(self, box: np.ndarray, score: float, det_frame: int, image: np.ndarray, frame_id: int,
               bridging: bool) -> None:
        tracker = None
        if self.cfg.kind != "none" and not bridging:
            tracker = self._new_tracker(image, box)
            if tracker is None:
                return
        if self.cfg.kind != "none" and self.costs.face_ms is None:
            self._new_tracker(image, box)  # measure what tracking a face costs before choosing
        tr = _Track(self._next_id, tracker, box.copy(), score, frame_id, self.cfg.history)
        self._next_id += 1
        tr.history.append((det_frame, tr.box))
        tr.record(frame_id)
        if bridging:
            tr.remember(image)
        if tr.hits >= self.cfg.min_hits:
            tr.state = CONFIRMED
            self.counters["tracks_confirmed"] += 1
        self._tracks.append(tr)
        self.counters["tracks_started"] += 1

    def _end_stale(self) -> None:
        keep = [tr for tr in self._tracks if tr.since_match <= self.max_lost]
        ended = len(self._tracks) - len(keep)
        if ended:
            self.counters["tracks_ended"] += ended
            self._tracks = keep
