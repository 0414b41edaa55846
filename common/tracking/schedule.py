"""Detect or track: chosen by what each costs on the running board, measured.

A detection costs what the detector reports (its latency per call, for all faces at once);
tracking costs what the correlation trackers take per face per frame, timed here on every
update. The detector runs on every frame it can, and correlation trackers only bridge the
faces it misses (occluded, turned away), when either
- the detector keeps up with the camera (latency within one frame period): it has its own
  core, which sits idle between sparse calls, so more calls cost the tracker's core nothing
  and every frame gets a fresh box (on this 2-core EPYC the detector takes 4-15 ms), or
- one detection costs no more than tracking every face for a frame (many faces: KCF took
  ~2-9 ms per face here, growing with the face).
Otherwise (a slow board or model, few faces) every face is tracked between detections and
the adaptive interval decides how often to detect. Both figures are running means, so the
choice follows the board's load and the face count.
"""
from __future__ import annotations

SMOOTHING = 0.1  # weight of the newest measurement in the running means


class CostSchedule:
    """Running means of detection ms per call and correlation-tracker ms per face update."""

    __slots__ = ("detector_ms", "face_ms")

    def __init__(self):
        self.detector_ms: float | None = None
        self.face_ms: float | None = None

    @staticmethod
    def _mean(old: float | None, new: float) -> float:
        return new if old is None else old + SMOOTHING * (new - old)

    def detection(self, ms: float) -> None:
        self.detector_ms = self._mean(self.detector_ms, ms)

    def tracker_update(self, ms: float) -> None:
        self.face_ms = self._mean(self.face_ms, ms)

    def detect_every_frame(self, faces: int, frame_ms: float) -> bool:
        """True when the detector keeps up with frames `frame_ms` apart, or one detection costs
        no more than tracking `faces` faces for one frame (at least one: a new face has to be
        found either way)."""
        if self.detector_ms is None:
            return False
        if self.detector_ms <= frame_ms:
            return True
        return self.face_ms is not None and self.detector_ms <= max(faces, 1) * self.face_ms
