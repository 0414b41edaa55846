"""The detector on another host: JPEG frames in from a board's frame forwarder, detections back.

    python -m services.remote_detector --connect tcp://BOARD:PORT [--config F] [--set detector.threads=4]

The board runs with `detector.remote: tcp://0.0.0.0:PORT` (its detector program becomes the
frame forwarder, services/frame_forwarder.py); this process connects to it, says it is free
(FrameRequest), gets the newest eligible frame as JPEG (EncodedFrame), runs the same model as
the local detector (services.detector.load: detector.variant, backend, model_dir, thresholds of
this host's config) and sends Detections back, boxes and keypoints in the board frame's pixels,
then asks again. Its metrics (service "detector") go back the same way, so the board's monitor
shows it. Nothing else of the board is reached: no bus, no ring. t_in/t_out are this host's
clock. When the board goes away it asks again every REQUEST_S until it comes back.

With `detector.remote_key` (this detector's NAME.key_secret) and `detector.remote_board_key`
(the board's board.key) the link is CURVE (common/curve.py): encrypted, and only to that board.
A board that refuses this detector's key (not in its authorized directory yet) is logged once
and asked again every RETRY_S: ZeroMQ itself does not reconnect after a refused handshake.
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
import time

import cv2
import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from common.curve import connect_securely
from common.messages import Detections, EncodedFrame, FrameRequest, MessageError, decode, encode
from common.service import MetricsReporter, ServiceContext, run_service
from services.detector import load

log = logging.getLogger("remote-detector")

REQUEST_S = 2.0  # no frame this long after asking: ask again (the board restarted, or lost the credit)
RETRY_S = 5.0  # after a failed handshake (key refused, wrong board key): connect again this much later
HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class _Channel:
    """A DEALER connected to the board's forwarder; `send(msg)` for MetricsReporter too.

    `check()` reads the handshake events: after a failed one the socket is made again
    RETRY_S later (each failure's cause is logged once until a handshake succeeds).
    """

    def __init__(self, endpoint: str, det):
        self.endpoint, self.det = endpoint, det
        self.sock: zmq.Socket  # both made by _open()
        self._monitor: zmq.Socket
        self._retry_at: float | None = None
        self._logged: set[int] = set()
        self._open()

    def _open(self) -> None:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.RCVHWM, 4)
        try:
            self.public = connect_securely(sock, self.det, self.endpoint)
        except Exception:
            sock.close(0)
            raise
        self._monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        sock.connect(self.endpoint)
        self.sock = sock

    def check(self) -> None:
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._logged or self._retry_at is None:
                    log.info("connected to the board at %s (%s)", self.endpoint,
                             "CURVE" if self.public else "plain, not encrypted")
                self._logged.clear()
                continue
            self._retry_at = time.monotonic() + RETRY_S
            if event["event"] not in self._logged:
                self._logged.add(event["event"])
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    log.error("the board at %s refused this detector's key %s: put this detector's NAME.key in "
                              "the board's detector.remote_authorized_dir; trying again every %g s", self.endpoint,
                              self.public.decode() if self.public else "(none: plain)", RETRY_S)
                else:
                    why = (f"ZMQ protocol error 0x{event['value']:x}" if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                           else "the board closed the connection")
                    log.error("handshake with the board at %s failed (%s): is detector.remote_board_key that "
                              "board's key, and do both sides use keys? trying again", self.endpoint, why)
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._retry_at = None
            self._close()
            self._open()

    def send(self, msg) -> None:
        try:
            self.sock.send_multipart(encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the board is away; the request is repeated, metrics come again

    def _close(self) -> None:
        self._monitor.close(0)
        self.sock.close(0)

    def close(self) -> None:
        self._close()


def detect_encoded(detector, msg: EncodedFrame) -> tuple[list, list, list] | None:
    """Boxes, scores and keypoints in the pixels of the board's frame, or None for a bad JPEG."""
    image = cv2.imdecode(np.frombuffer(msg.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    found = detector.detect(image)
    boxes = np.asarray(found.boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return [], [], []
    keypoints = np.asarray(found.keypoints, np.float64).reshape(len(boxes), -1, 2)
    sx, sy = msg.width / image.shape[1], msg.height / image.shape[0]
    if (sx, sy) != (1.0, 1.0):  # the forwarder shrank the frame (detector.remote_max_side)
        boxes = boxes * [sx, sy, sx, sy]
        keypoints = keypoints * [sx, sy]
    return boxes.tolist(), np.asarray(found.scores, np.float64).reshape(-1).tolist(), keypoints.tolist()


def serve(ctx: ServiceContext) -> None:
    endpoint = ctx.args.connect
    channel = _Channel(endpoint, ctx.config.detector)  # key problems stop it before the model loads
    try:
        detector = load(ctx)
    except BaseException:
        channel.close()
        raise
    metrics = MetricsReporter("detector", channel, ctx.stats, ctx.config.monitor.interval_s)
    name = f"{socket.gethostname()}:{ctx.args.name or 'detector'}"
    stats = ctx.stats
    log.info("remote detector %s: asking %s for frames", name, endpoint)
    asked = 0.0
    try:
        while not ctx.stop.is_set():
            metrics.tick()
            channel.check()
            if time.monotonic() - asked > REQUEST_S:
                channel.send(FrameRequest(detector=name, t=time.time()))
                asked = time.monotonic()
            if not channel.sock.poll(200):
                continue
            try:
                msg = decode(channel.sock.recv_multipart())
            except MessageError as exc:
                stats.errors += 1
                log.warning("malformed message from the board: %s", exc)
                continue
            if not isinstance(msg, EncodedFrame):
                continue
            stats.frames_in += 1
            t_in = time.time()
            found = detect_encoded(detector, msg)
            t_out = time.time()
            if found is None:
                stats.errors += 1
            else:
                boxes, scores, keypoints = found
                channel.send(Detections(frame_id=msg.frame_id, t_capture=msg.t_capture, t_in=t_in, t_out=t_out,
                                        boxes=boxes, scores=scores, keypoints=keypoints))
                stats.processed((t_out - t_in) * 1000)
            stats.extra.update(jpeg_kb=len(msg.jpeg) / 1024, remote=1)
            channel.send(FrameRequest(detector=name, t=time.time()))
            asked = time.monotonic()
    finally:
        channel.close()


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", required=True, metavar="tcp://BOARD:PORT",
                        help="the board's detector.remote endpoint (its frame forwarder)")
    parser.add_argument("--name", help="this detector's name in the board's logs (default: detector)")


def main(argv: list[str] | None = None) -> int:
    return run_service("remote-detector", serve, argv, add_args)


if __name__ == "__main__":
    sys.exit(main())
