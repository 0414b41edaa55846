"""The ByteTrack baseline: roboflow `trackers` (2.6.1) on the detector's boxes, as it would run live.

The detector runs whenever it is free (every frame when it is faster than the camera);
ByteTrack updates on each result when it arrives, so the boxes published for frame t are
ByteTrack's for the latest detected frame (late by the detector's latency, as live). The
library's defaults are kept except `frame_rate` (the sequence's) and the score thresholds,
which follow the detector's: tracks start from detections the detector itself would report
(`score_threshold`), lower-score ones (down to the same `low_score` as facetrack's) only
feed ByteTrack's second matching stage.
"""
from __future__ import annotations

import time

import numpy as np

from .eval_replay import CachedDetections, DetectorClock


def run_bytetrack(cache: CachedDetections, frames: int, fps: float, latency_ms: float,
                  score_threshold: float, low_score: float) -> tuple[list[tuple], int, float, float]:
    """MOT rows (frame, id, x1, y1, x2, y2, score), detector calls, detector CPU s, tracker CPU s.
    Detections below `low_score` are left out, as for facetrack's second stage."""
    import supervision as sv  # imported here: only this baseline needs them
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(frame_rate=fps, track_activation_threshold=score_threshold,
                               high_conf_det_threshold=score_threshold)
    clock = DetectorClock(latency_ms, fps)
    rows, calls, det_s, trk_s, current = [], 0, 0.0, 0.0, []
    for frame_id in range(1, frames + 1):
        if clock.can_start(frame_id):
            clock.start(frame_id)
            calls += 1
            det_s += float(cache.cpu_s[frame_id - 1])
        for k in clock.arrived(frame_id):
            found = cache.at(k, low_score)
            t0 = time.process_time()
            out = tracker.update(sv.Detections(xyxy=found.boxes.reshape(-1, 4).astype(np.float32),
                                               confidence=found.scores.astype(np.float32)))
            trk_s += time.process_time() - t0
            current = [(int(tid), *map(float, box), float(score))
                       for tid, box, score in zip(out.tracker_id, out.xyxy, out.confidence) if tid >= 0]
        rows += [(frame_id, tid + 1, x1, y1, x2, y2, s) for tid, x1, y1, x2, y2, s in current]
    return rows, calls, det_s, trk_s
