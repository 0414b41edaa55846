"""An RTSP or HTTP stream (IP camera, MJPEG server) through OpenCV's FFmpeg, reconnecting when it drops.

A stream that cannot be reached at start is an input error (wrong URL: say so at once). One
that drops later is retried with exponential back-off (0.5 s doubling to 10 s) until it comes
back or the service is stopped: Wi-Fi cameras drop and return, and the pipeline should too.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import urllib.parse

import cv2
import numpy as np

from common.config import CaptureConfig
from common.service import InputError
from services.sources.base import Source, SourceInfo

log = logging.getLogger(__name__)



def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class NetworkStreamSource(Source):
    """Frames of a live stream; position counts frames received since start (across reconnects)."""

    def __init__(self, url: str, stop: threading.Event, capture: CaptureConfig):
        self.url = url
        self.cfg = capture  # stream_* timeouts, reconnect_* back-off
        self.name = redact(url)
        self.stop = stop
        self.reconnects = 0
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._buf: np.ndarray | None = None

    def _connect(self) -> cv2.VideoCapture | None:
        if self.url.lower().startswith("rtsp"):
            # UDP loses packets on Wi-Fi and smears frames; TCP unless the user chose otherwise.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self.cfg.stream_open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self.cfg.stream_read_timeout_s * 1000)]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, timeouts)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def open(self) -> SourceInfo:
        self._cap = self._connect()
        if self._cap is None:
            raise InputError(f"capture source {self.name}: cannot connect (unreachable, or not a video stream)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        width, height = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        # MJPEG over HTTP reports its time base (e.g. 90000) as fps: treat such values as unknown.
        return SourceInfo(width, height, fps if math.isfinite(fps) and 0 < fps <= 240 else 0.0, live=True)

    def read(self) -> tuple[np.ndarray, int] | None:
        while not self.stop.is_set():
            if self._cap is not None:
                ok, frame = self._cap.read(self._buf)
                if ok:
                    self._buf = frame
                    self._pos += 1
                    return frame, self._pos - 1
                log.warning("capture source %s: stream dropped after frame %d; reconnecting", self.name, self._pos)
                self._cap.release()
                self._cap = None
            self._reconnect()
        return None

    def _reconnect(self) -> None:
        """Try again and again, waiting longer each time, until connected or stopped."""
        delay, attempts = self.cfg.reconnect_min_s, 0
        while not self.stop.wait(delay):
            attempts += 1
            self._cap = self._connect()
            if self._cap is not None:
                self.reconnects += 1
                log.info("capture source %s: reconnected after %d attempt(s)", self.name, attempts)
                return
            log.warning("capture source %s: reconnect attempt %d failed; next in %.1f s", self.name, attempts,
                        min(delay * 2, self.cfg.reconnect_max_s))
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
