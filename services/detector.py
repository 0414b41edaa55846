"""The detector: BlazeFace compiled by TVM, run on the newest frame every Nth frame.

It is slower than the camera, so it never queues work: after each inference it drains the
bus and keeps only the newest frame, counting the rest as skipped. N comes from config,
then from the tracker (`Tracks.detect_every`) when the tracker adapts it. Detections name
the frame they were computed on; the tracker deals with their lateness.

When capture also wrote the camera's lores copy of a frame (a Pi camera: the ISP scaled it,
Frame.lores_seq), the model runs on that and boxes and keypoints are scaled back to the main
frame's pixels, axis by axis (the ISP scales the same field of view to both streams). The
model's own preprocessing then goes from the lores size to its input size, whatever that is.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.bus import Subscriber
from common.config import ROOT
from common.frame_ring import RingReader, lores_name
from common.messages import Detections, Frame, Tracks
from common.runs import RunWatch
from common.service import InputError, ServiceContext, run_service

log = logging.getLogger("detector")


def load(ctx: ServiceContext):
    """Load the compiled model; a bad model file becomes a one-line InputError."""
    from models import runtime
    from models.auto import resolve

    cfg = ctx.config.detector
    model_dir = Path(cfg.model_dir)
    if not model_dir.is_absolute():
        model_dir = ROOT / model_dir
    backend = resolve(cfg.backend, model_dir / cfg.variant, "detector", log)  # one line for auto
    if backend == "tvm":
        runtime.tvm_runtime_only()  # no compiler library, no torch: ~100 MB RSS instead of ~450
    from models.runtime import ModelFileError, load_detector
    from models.zoo import thresholds

    # boxes down to tracker.low_score too: the tracker's second matching stage keeps tracks with them
    score_threshold, nms_iou = thresholds(cfg.variant, cfg.score_threshold, cfg.nms_iou)
    threshold = min(score_threshold, ctx.config.tracker.low_score)
    try:
        detector = load_detector(variant=cfg.variant, backend=backend, model_dir=model_dir,
                                 score_threshold=threshold, nms_iou=nms_iou,
                                 num_threads=cfg.threads, input_size=cfg.input_size)
    except ModelFileError as exc:
        raise InputError(str(exc)) from None
    log.info("model loaded: %s on %s, every %d frames", cfg.variant, backend, cfg.every_n)
    return detector


def serve(ctx: ServiceContext) -> None:
    if ctx.config.detector.remote:  # the model runs elsewhere: forward JPEG frames to it instead
        from services.frame_forwarder import serve as forward
        return forward(ctx)
    detector = load(ctx)
    cfg = ctx.config
    sub = Subscriber(cfg.bus.subscribe, [Frame.TOPIC, Tracks.TOPIC], hwm=cfg.bus.hwm, stats=ctx.stats)
    reader = RingReader(cfg.ring_name, cfg.ring.shm_dir)
    small_reader = RingReader(lores_name(cfg.ring_name), cfg.ring.shm_dir)
    stats = ctx.stats
    every_n = cfg.detector.every_n
    last_detected = None
    capture = RunWatch()
    skipped = 0
    try:
        while not ctx.stop.is_set():
            ctx.metrics.tick()
            batch = sub.batch(timeout_ms=200)
            for msg in batch.of(Tracks):
                every_n = msg.detect_every
            stats.frames_in += len(batch.of(Frame))
            skipped += batch.skipped_frames  # by design: the detector works on the newest frame only
            newest = batch.newest_frame
            if newest is not None and capture.changed(newest.ring_id):
                last_detected = None  # a restarted capture numbers from 0 again
            if newest is None or (last_detected is not None and newest.frame_id - last_detected < every_n):
                continue
            if newest.lores_seq:
                image = small_reader.read_at(newest.ring_id, newest.slot, newest.lores_seq, copy=False)
            else:
                image = reader.read(newest, copy=False)
            if image is None:
                stats.dropped += 1
                continue
            t_in = time.time()
            found = detector.detect(image)
            boxes, keypoints = to_main(found.boxes, found.keypoints, image.shape, newest.width, newest.height)
            t_out = time.time()
            last_detected = newest.frame_id
            ctx.publisher.send(Detections(
                frame_id=newest.frame_id, t_capture=newest.t_capture, t_in=t_in, t_out=t_out,
                boxes=boxes, scores=found.scores, keypoints=keypoints, ring_id=newest.ring_id))
            stats.processed((t_out - t_in) * 1000)
            stats.latency("capture_to_infer", t_in - newest.t_capture)
            stats.latency("capture_to_detected", t_out - newest.t_capture)
            stats.extra.update(skipped=skipped, every_n=every_n, stale_frames=reader.stale + small_reader.stale,
                               lores=float(bool(newest.lores_seq)))
    finally:
        sub.close()
        reader.close()
        small_reader.close()


def to_main(boxes: np.ndarray, keypoints: np.ndarray, shape: tuple[int, ...], width: int, height: int
            ) -> tuple[Any, Any]:
    """Boxes (x1 y1 x2 y2) and keypoints (x y) found on an image of `shape`, in pixels of the
    width x height main frame (unchanged when the image is the main frame)."""
    sx, sy = width / shape[1], height / shape[0]
    if (sx, sy) == (1.0, 1.0):
        return boxes, keypoints
    return boxes * np.array([sx, sy, sx, sy], np.float32), keypoints * np.array([sx, sy], np.float32)


def main(argv: list[str] | None = None) -> int:
    return run_service("detector", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
