"""Detect or track: chosen by what each costs on the running board, measured.

A detection costs what the detector reports (its latency per call, for all faces at once);
tracking costs what the correlation trackers take per face per frame, timed on every update
by the clock the TrackManager is given (the live tracker's perf_counter; a StepClock's fixed
cost in `facetrack eval` and the tests, so their runs are reproducible). The detector runs on every frame it can, and correlation trackers only bridge the
faces it misses (occluded, turned away), when either
- the detector has a core of its own (the board has more than one CPU, as a Pi 5 has four;
  the board's count, not a process's affinity, which TVM's runtime pins to one): its calls
  then cost the tracker's core nothing, and detecting as often as it can and bridging the misses beat tracking every face between sparser detections even
  with a detector 2 frames late (`facetrack eval --latency-ms 60` on OTB + SYN here: HOTA
  55.7 vs 51.1 and 49.9 vs 44.1, tracker CPU 0.35 vs 2.5 and 1.5 vs 15 ms per frame); or
- on a single shared core, one detection costs no more than tracking every face for a frame
  (many faces: KCF took ~2-9 ms per face here, growing with the face).
Otherwise (one core, a slow model, few faces) every face is tracked between detections and
the adaptive interval decides how often to detect. Both costs are running means, so the
choice follows the board's load and the face count.
"""
from __future__ import annotations

SMOOTHING = 0.1  # weight of the newest measurement in the running means
BOARD_CORES = 4  # a Pi 5: what `facetrack eval` assumes unless told (--cores)
TRACKER_MS = 3.0  # one correlation-tracker update on one face, for a reproducible run (--tracker-ms)


class StepClock:
    """A clock for reproducible runs: each reading is `step_ms` after the one before, so every
    timed tracker update costs exactly `step_ms` (what `facetrack eval` and the tests give the
    TrackManager instead of the machine's own perf_counter)."""

    def __init__(self, step_ms: float = TRACKER_MS):
        self.step_s, self.t = step_ms / 1000, 0.0

    def __call__(self) -> float:
        self.t += self.step_s
        return self.t


class CostSchedule:
    """Running means of detection ms per call and correlation-tracker ms per face update."""

    __slots__ = ("detector_ms", "face_ms", "own_core")

    def __init__(self, own_core: bool):
        self.detector_ms: float | None = None
        self.face_ms: float | None = None
        self.own_core = own_core

    @staticmethod
    def _mean(old: float | None, new: float) -> float:
        return new if old is None else old + SMOOTHING * (new - old)

    def detection(self, ms: float) -> None:
        self.detector_ms = self._mean(self.detector_ms, ms)

    def tracker_update(self, ms: float) -> None:
        self.face_ms = self._mean(self.face_ms, ms)

    def detect_every_frame(self, faces: int) -> bool:
        """True when the detector has its own core, or one detection costs no more than
        tracking `faces` faces for one frame (at least one: a new face has to be found either
        way). False until the detector has reported a cost (it may not be running)."""
        if self.detector_ms is None:
            return False
        if self.own_core:
            return True
        return self.face_ms is not None and self.detector_ms <= max(faces, 1) * self.face_ms
