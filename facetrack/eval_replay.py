"""Replaying a sequence as the live stack sees it: one detector pass shared by every setting,
detections arriving as late as the detector's latency makes them.

The detector runs once on every frame (`detect_all`); each setting then reads the frames it
asked for from that cache, so every method is scored on the same detector outputs and the
detector's cost is counted per call it made. `DetectorClock` is the live detector's timing:
a call on frame k takes `latency_ms`, its result reaches the tracker at the first frame at or
after k + latency, and no new call starts before the last one finished (live, the detector
takes the newest frame when it is free).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from common.tracking import FrameDetections


@dataclass(frozen=True)
class CachedDetections:
    """The detector's output on every frame (index 0 = frame 1) and what each call cost."""
    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    cpu_s: np.ndarray
    wall_s: np.ndarray

    def at(self, frame_id: int, min_score: float = 0.0) -> FrameDetections:
        boxes, scores = self.boxes[frame_id - 1], self.scores[frame_id - 1]
        keep = scores >= min_score
        return FrameDetections(frame_id, boxes[keep], scores[keep])


def detect_all(images: list[np.ndarray], detector) -> CachedDetections:
    """The detector on every image, with process CPU and wall time per call."""
    boxes, scores, cpu, wall = [], [], [], []
    for image in images:
        c0, w0 = time.process_time(), time.perf_counter()
        found = detector.detect(image)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        boxes.append(np.asarray(found.boxes, np.float64).reshape(-1, 4))
        scores.append(np.asarray(found.scores, np.float64).reshape(-1))
    return CachedDetections(boxes, scores, np.array(cpu), np.array(wall))


class DetectorClock:
    """When the detector may start and when its result arrives, in frames at `fps`."""

    def __init__(self, latency_ms: float, fps: float):
        self.delay = latency_ms * fps / 1000.0  # frames from a call's start to its result
        self._free_at = -math.inf
        self._in_flight: list[tuple[int, int]] = []  # (arrival frame, detected frame)

    def can_start(self, frame_id: int) -> bool:
        return frame_id >= self._free_at

    def start(self, frame_id: int) -> None:
        self._free_at = frame_id + self.delay
        self._in_flight.append((frame_id + math.ceil(self.delay - 1e-9), frame_id))

    def arrived(self, frame_id: int) -> list[int]:
        """Frames whose detections reach the tracker at `frame_id` (oldest first)."""
        due = [k for at, k in self._in_flight if at <= frame_id]
        self._in_flight = [(at, k) for at, k in self._in_flight if at > frame_id]
        return due
