"""Detect or track: chosen by what each costs on the running board, measured.

A detection costs what the detector reports (its latency per call, for all faces at once);
tracking costs what the correlation trackers take per face per frame, timed here on every
update. When one detection costs no more than tracking every face for a frame, the detector
runs on every frame it can and correlation trackers only bridge the faces it misses
(occluded, turned away): on this 2-core EPYC, KCF took ~8 ms per face and the detector 4–7 ms
for all faces. When detection is the dearer (a slow board, a slow model, one face), every
face is tracked between detections and the adaptive interval decides how often to detect.
Both figures are running means, so the choice follows the board's load and the face count.
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

    def detect_every_frame(self, faces: int) -> bool:
        """True when one detection costs no more than tracking `faces` faces for one frame
        (at least one face counted: a new face has to be found either way)."""
        if self.detector_ms is None or self.face_ms is None:
            return False
        return self.detector_ms <= max(faces, 1) * self.face_ms
