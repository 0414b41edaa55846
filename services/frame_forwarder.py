"""Frame forwarder: the board's half of a detector that runs on another host.

With `detector.remote: tcp://HOST:PORT` the board's `detector` program runs this instead of the
model (services/detector.py hands over at start). It binds a ZMQ ROUTER socket there; a remote
detector (services/remote_detector.py) connects a DEALER socket and the two speak messages of
common/messages.py over that one connection:

  remote -> board   FrameRequest  "I am free": a credit for one frame
  board  -> remote  EncodedFrame  the newest frame, JPEG-encoded (pixels leave the board only here)
  remote -> board   Detections    published on this board's bus as the local detector would
  remote -> board   Metrics       the remote detector's metrics, published on the bus too

Frames go out only against a credit, so a slow network or detector never builds a queue of
stale frames anywhere (not in ZMQ, not in TCP buffers): the detector always gets the newest
frame, exactly as the local detector takes the newest one from the bus. The every-Nth rule
(detector.every_n, then the tracker's `detect_every`) is applied here, before encoding, so
frames the detector would skip are never encoded nor sent. Several remote detectors may
connect: each free one gets the next eligible frame. The bus stays local (ipc); only this
endpoint is exposed.
"""
from __future__ import annotations

import collections
import logging
import time

import cv2
import zmq

from common.bus import Batch, Subscriber
from common.frame_ring import RingReader
from common.messages import (Detections, EncodedFrame, Frame, FrameRequest, MessageError, Metrics, Tracks,
                             decode, encode)
from common.service import InputError, ServiceContext

log = logging.getLogger("forwarder")

SEND_HWM = 4  # frames queued per remote detector at most (it asked for one at a time anyway)


def encode_frame(image, frame: Frame, quality: int, max_side: int) -> EncodedFrame:
    """JPEG of the frame, shrunk to `max_side` pixels on its longer side when that is smaller."""
    h, w = image.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return EncodedFrame(frame_id=frame.frame_id, t_capture=frame.t_capture, width=frame.width, height=frame.height,
                        jpeg=buf.tobytes())


def serve(ctx: ServiceContext) -> None:
    ctx.name = "forwarder"  # its metrics; the remote detector's own come as "detector"
    cfg = ctx.config
    det = cfg.detector
    zctx = zmq.Context.instance()
    router = zctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, SEND_HWM)
    router.setsockopt(zmq.RCVHWM, 100)
    router.setsockopt(zmq.LINGER, 0)
    try:
        router.bind(det.remote)
    except zmq.ZMQError as exc:
        router.close(0)
        raise InputError(f"detector.remote {det.remote}: cannot bind ({exc})") from None
    log.info("remote detector mode: forwarding JPEG frames on %s (quality %d, max side %s)", det.remote,
             det.remote_jpeg_quality, det.remote_max_side or "full")
    sub = Subscriber(cfg.bus.subscribe, [Frame.TOPIC, Tracks.TOPIC], hwm=cfg.bus.hwm, stats=ctx.stats)
    reader = RingReader(cfg.ring_name, cfg.ring.shm_dir)
    poller = zmq.Poller()
    poller.register(sub.sock, zmq.POLLIN)
    poller.register(router, zmq.POLLIN)
    stats = ctx.stats
    waiting: collections.OrderedDict[bytes, float] = collections.OrderedDict()
    every_n = det.every_n
    newest: Frame | None = None
    last_sent: int | None = None
    counters = {"forwarded": 0, "jpeg_bytes": 0, "detections_relayed": 0, "remote_malformed": 0,
                "remote_waiting": 0, "encode_ms": 0.0}
    try:
        while not ctx.stop.is_set():
            ctx.metrics.tick()
            events = dict(poller.poll(200))
            if router in events:
                while True:
                    try:
                        peer, *parts = router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        msg = decode(parts)
                    except MessageError as exc:
                        counters["remote_malformed"] += 1
                        log.warning("remote detector sent a malformed message: %s", exc)
                        continue
                    if isinstance(msg, FrameRequest):
                        if peer not in waiting:
                            log.debug("remote detector %s is free", msg.detector)
                        waiting[peer] = msg.t
                    elif isinstance(msg, (Detections, Metrics)):
                        ctx.publisher.send(msg)
                        counters["detections_relayed"] += isinstance(msg, Detections)
            if sub.sock in events:  # polled with the remote's socket: take what is queued
                batch = Batch(sub.drain())
                for msg in batch.of(Tracks):
                    every_n = msg.detect_every
                stats.frames_in += len(batch.of(Frame))
                newest = batch.newest_frame or newest
            stats.errors = counters["remote_malformed"]
            counters["remote_waiting"] = len(waiting)
            stats.extra.update(counters, every_n=every_n, stale_frames=reader.stale)
            if not waiting or newest is None or newest.frame_id == last_sent:
                continue
            if last_sent is not None and 0 <= newest.frame_id - last_sent < every_n:
                continue
            image = reader.read(newest, copy=False)
            if image is None:
                stats.dropped += 1
                newest = None
                continue
            t0 = time.perf_counter()
            out = encode_frame(image, newest, det.remote_jpeg_quality, det.remote_max_side)
            counters["encode_ms"] = (time.perf_counter() - t0) * 1000
            peer, _ = waiting.popitem(last=False)
            try:
                router.send_multipart([peer, *encode(out)], zmq.NOBLOCK)
            except zmq.Again:
                stats.dropped += 1  # that detector's queue is full: it is gone or stuck
                continue
            last_sent = newest.frame_id
            counters["forwarded"] += 1
            counters["jpeg_bytes"] += len(out.jpeg)
            stats.processed((time.perf_counter() - t0) * 1000)
    finally:
        sub.close()
        reader.close()
        router.close(0)
