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
endpoint is exposed, and with `detector.remote_key` it speaks CURVE (common/curve.py): only the
detector keys of `detector.remote_authorized_dir` get through the handshake, and a request is
served only while its sender's key (ZMQ's User-Id of the message) is still listed there.
"""
from __future__ import annotations

import collections
import logging
import time
import typing

import cv2
import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from common.bus import Batch, Subscriber
from common.curve import DetectorGate, serve_securely
from common.frame_ring import RingReader
from common.messages import (Detections, EncodedFrame, Frame, FrameRequest, MessageError, Metrics, Tracks,
                             decode, encode)
from common.recent import RecentMap
from common.runs import RunWatch
from common.service import InputError, ServiceContext

log = logging.getLogger("forwarder")

SEND_HWM = 4  # frames queued per remote detector at most (it asked for one at a time anyway)
SENT_KEPT = 64  # frames sent whose ring is remembered for their detections


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


class _HandshakeFailures:
    """Clients that fail the handshake before ZAP (no CURVE at all, a wrong board key): counted, logged once."""

    EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL

    def __init__(self, router: zmq.Socket):
        self.sock = router.get_monitor_socket(self.EVENTS)
        self.count = 0

    def drain(self) -> None:
        while self.sock.poll(0):
            event = recv_monitor_message(self.sock)
            self.count += 1
            if self.count == 1:
                log.warning("a client failed the CURVE handshake on %s (ZMQ protocol error 0x%x: no CURVE, or not "
                            "this board's key); later ones are counted, not logged (remote_handshake_failed)",
                            event["endpoint"].decode(), event["value"])

    def close(self) -> None:
        self.sock.close(0)


def _served(gate: DetectorGate | None, user_id: str | None, refused: set) -> bool:
    """Whether a request's sender may have frames: its key is still authorized (always, when plain)."""
    if gate is None or user_id is None:
        return gate is None
    if gate.keys.name_of(user_id.encode()) is not None:
        refused.discard(user_id)
        return True
    if user_id not in refused:
        refused.add(user_id)
        log.warning("remote detector key %s is no longer in %s: its messages are dropped, no frames for it", user_id,
                    gate.keys.directory)
    return False


def serve(ctx: ServiceContext) -> None:
    ctx.name = "forwarder"  # its metrics; the remote detector's own come as "detector"
    cfg = ctx.config
    det = cfg.detector
    zctx = zmq.Context.instance()
    router = zctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, SEND_HWM)
    router.setsockopt(zmq.RCVHWM, 100)
    router.setsockopt(zmq.LINGER, 0)
    gate: DetectorGate | None = None
    failures: _HandshakeFailures | None = None
    try:
        gate = serve_securely(router, det)  # before bind: no client may slip in plain
        failures = _HandshakeFailures(router) if gate else None
        router.bind(det.remote)
    except (InputError, zmq.ZMQError) as exc:
        if failures is not None:
            failures.close()
        router.close(0)
        if gate is not None:
            gate.stop()
        if isinstance(exc, InputError):
            raise
        raise InputError(f"detector.remote {det.remote}: cannot bind ({exc})") from None
    log.info("remote detector mode: forwarding JPEG frames on %s (%s; quality %d, max side %s)", det.remote,
             f"CURVE, detector keys of {gate.keys.directory}" if gate else "plain, no keys",
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
    sent_rings: RecentMap = RecentMap(SENT_KEPT)  # frame id -> ring id of the frames sent
    last_sent: int | None = None
    capture = RunWatch()
    counters: dict[str, float] = {"forwarded": 0, "jpeg_bytes": 0, "detections_relayed": 0, "remote_malformed": 0,
                "remote_waiting": 0, "encode_ms": 0.0, "remote_denied": 0, "remote_handshake_failed": 0}
    refused: set[str] = set()
    try:
        while not ctx.stop.is_set():
            ctx.metrics.tick()
            events = dict(poller.poll(200))
            if gate is not None:
                if not gate.alive():
                    raise RuntimeError("the ZAP authenticator thread is gone: no detector can connect")
                assert failures is not None  # made with the gate
                failures.drain()
                counters.update(remote_denied=gate.denied, remote_handshake_failed=failures.count)
            if router in events:
                while True:
                    try:
                        sender, *frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    # a named property of a message is a string (zmq_msg_gets)
                    user_id = typing.cast("str | None", frames[0].get("User-Id")) if gate is not None and frames else None
                    peer, parts = sender.bytes, [p.bytes for p in frames]
                    if not _served(gate, user_id, refused):  # a key taken out of the directory
                        waiting.pop(peer, None)
                        continue
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
                    elif isinstance(msg, Metrics):  # another host's pid and program: none of ours
                        ctx.publisher.send(msgspec.structs.replace(msg, program=""))
                    elif isinstance(msg, Detections):  # the ring of the frame it was sent (the remote knows none)
                        ctx.publisher.send(msgspec.structs.replace(msg, ring_id=sent_rings.get(msg.frame_id, 0)))
                        counters["detections_relayed"] += 1
            if sub.sock in events:  # polled with the remote's socket: take what is queued
                batch = Batch(sub.drain())
                for msg in batch.of(Tracks):
                    every_n = msg.detect_every
                stats.frames_in += len(batch.of(Frame))
                newest = batch.newest_frame or newest
            stats.errors = int(counters["remote_malformed"])
            counters["remote_waiting"] = len(waiting)
            stats.extra.update(counters, every_n=every_n, stale_frames=reader.stale)
            if newest is not None and capture.changed(newest.ring_id):
                last_sent = None  # a restarted capture numbers from 0 again
            if not waiting or newest is None or newest.frame_id == last_sent:
                continue
            if last_sent is not None and newest.frame_id - last_sent < every_n:
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
            sent_rings.remember(newest.frame_id, newest.ring_id)
            counters["forwarded"] += 1
            counters["jpeg_bytes"] += len(out.jpeg)
            stats.processed((time.perf_counter() - t0) * 1000)
    finally:
        sub.close()
        reader.close()
        if failures is not None:
            failures.close()
        router.close(0)
        if gate is not None:
            gate.stop()
