"""The tracker: a correlation tracker per face on every frame, IDs from detections.

It keeps up with the camera: frames it could not get to are skipped (counted), never
queued. Detections arrive late, for an older frame; `TrackManager` matches them against
the boxes the tracks had on that frame and carries the correction forward. Every processed
frame's tracks are published, with the detection interval the tracker wants next, under the
tracker's run id (common/runs.py): new at every start, and again when capture restarts (a new
ring), as the tracks then start afresh.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from common.bus import Subscriber
from common.frame_ring import RingReader
from common.messages import Detections, Frame, Tracks
from common.runs import RunWatch, new_run_id
from common.service import ServiceContext, run_service
from common.tracking import FrameDetections, TrackManager
from common.tracking.rate import FrameRate
from models.zoo import thresholds

log = logging.getLogger("tracker")


def to_frame_detections(msg: Detections) -> FrameDetections:
    boxes = np.asarray(msg.boxes, np.float32).reshape(-1, 4)
    return FrameDetections(frame_id=msg.frame_id, boxes=boxes, scores=np.asarray(msg.scores, np.float32))


def serve(ctx: ServiceContext) -> None:
    cfg = ctx.config
    rate = FrameRate(prior=cfg.capture.fps or 30.0)  # the source's rate, learnt from the frames
    start_score, _ = thresholds(cfg.detector.variant, cfg.detector.score_threshold)  # what the detector calls a face
    manager = TrackManager(cfg.tracker, fps=rate.fps, start_score=start_score,
                           cores=os.cpu_count() or 1, clock=time.perf_counter)  # this board, measured live
    fixed_interval = None if cfg.tracker.adaptive else cfg.detector.every_n
    sub = Subscriber(cfg.bus.subscribe, [Frame.TOPIC, Detections.TOPIC], hwm=cfg.bus.hwm, stats=ctx.stats)
    reader = RingReader(cfg.ring_name, cfg.ring.shm_dir)
    stats = ctx.stats
    pending: Detections | None = None
    last_frame_id: int | None = None
    run_id, capture = new_run_id(), RunWatch()
    log.info("tracker run %x", run_id)
    try:
        while not ctx.stop.is_set():
            ctx.metrics.tick()
            batch = sub.batch(timeout_ms=200)
            newest = batch.newest_frame
            if newest is not None and capture.changed(newest.ring_id):
                # A restarted capture numbers its frames from 0 again: the tracks' history is
                # keyed by the old numbers, so start afresh, as a new run.
                run_id = new_run_id()
                log.warning("capture restarted (new ring %x): tracks reset, tracker run %x", newest.ring_id, run_id)
                manager.reset()
                rate.reset()
                pending, last_frame_id = None, None
                stats.extra["resets"] = stats.extra.get("resets", 0) + 1
            for msg in batch.of(Detections):
                if msg.ring_id not in (0, capture.run):
                    continue  # computed on a frame of another capture run
                stats.latency("detected_to_tracker", time.time() - msg.t_out)
                manager.detector_cost(1000 * (msg.t_out - msg.t_in))  # what a detection costs here
                if pending is not None and pending.frame_id < msg.frame_id:
                    stats.extra["detections_superseded"] = stats.extra.get("detections_superseded", 0) + 1
                if pending is None or pending.frame_id < msg.frame_id:
                    pending = msg
            stats.frames_in += len(batch.of(Frame))
            for frame in batch.of(Frame):
                if frame.ring_id == capture.run:
                    rate.see(frame.frame_id, frame.t_capture)
            manager.fps = rate.fps  # seconds to frames at the rate the source delivers
            stats.dropped += batch.skipped_frames  # the tracker keeps up with the camera: skipped is lost
            if newest is None or (last_frame_id is not None and newest.frame_id <= last_frame_id):
                continue
            image = reader.read(newest, copy=False)
            if image is None:
                stats.dropped += 1
                continue
            t0 = time.perf_counter()
            detections = None
            if pending is not None and pending.frame_id <= newest.frame_id:
                detections, pending = to_frame_detections(pending), None
            if detections is not None:
                stats.extra["detection_age_frames"] = newest.frame_id - detections.frame_id
            tracks = manager.step(newest.frame_id, image, detections)
            last_frame_id = newest.frame_id
            t_tracked = time.time()
            ctx.publisher.send(Tracks(
                frame_id=newest.frame_id, t_capture=newest.t_capture, t_tracked=t_tracked,
                tracks=tracks, detect_every=fixed_interval or manager.detect_interval,
                detected=detections is not None, run_id=run_id))
            stats.latency("capture_to_tracked", t_tracked - newest.t_capture)
            stats.processed((time.perf_counter() - t0) * 1000)
            stats.extra.update(manager.counters)
            stats.extra["tracks"] = len(tracks)
            stats.extra["bridging"] = int(manager.bridging)
            stats.extra["source_fps"] = rate.fps
    finally:
        sub.close()
        reader.close()


def main(argv: list[str] | None = None) -> int:
    return run_service("tracker", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
