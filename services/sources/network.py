"""An RTSP or HTTP stream (IP camera, MJPEG server) through OpenCV's FFmpeg, waiting and reconnecting.

A stream that cannot be reached, at start or later, is retried with exponential back-off
(capture.reconnect_min_s doubling to reconnect_max_s) until it answers or the service is
stopped: cameras reboot, routers and Wi-Fi come up late, and the pipeline must come back by
itself (a capture that exits would be given up by supervisord after a few tries). Each change
of state is one line naming the cause ("connection refused", "cannot resolve cam.local", ...):
the cause comes from a plain TCP connection to the stream's host and port, because OpenCV only
says that opening failed. FFmpeg's and OpenCV's own messages about the same failure (several
lines per attempt) are silenced in this process.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import socket
import threading
import time
import urllib.parse

import cv2
import numpy as np

from common.config import CaptureConfig
from services.sources.base import Source, SourceInfo

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def quiet_libraries() -> None:
    """FFmpeg (av_log, read by OpenCV when its FFmpeg backend starts) and OpenCV's warnings: off.

    Every failure they would print is reported here, once, with its cause.
    """
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def unreachable_cause(url: str, timeout: float) -> str:
    """Why a stream did not open, as far as a TCP connection to its host and port tells."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return "bad port in the URL"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "it answers but gives no video (wrong path or credentials, or not a video stream)"
    except socket.gaierror:
        return f"cannot resolve {host}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))).lower()


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
        self._down: str | None = None  # the cause logged for the outage going on, if any
        self._down_since = 0.0
        quiet_libraries()

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
        """Connect if it answers now; if not, say why once and let read() wait for it."""
        self._cap = self._connect()
        if self._cap is None:
            self._went_down(unreachable_cause(self.url, self.cfg.stream_open_timeout_s))
            return SourceInfo(0, 0, 0.0, live=True)
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
                self._cap.release()
                self._cap = None
                self._went_down(f"stream dropped after frame {self._pos}")
            self._reconnect()
        return None

    def _went_down(self, cause: str) -> None:
        """One line for an outage's start, and one more only when its cause changes."""
        if cause != self._down:
            log.warning("capture source %s: %s; retrying, backing off to %g s", self.name, cause,
                        self.cfg.reconnect_max_s)
        if self._down is None:
            self._down_since = time.monotonic()
        self._down = cause

    def _reconnect(self) -> None:
        """Try again and again, waiting longer each time, until connected or stopped."""
        delay, attempts = self.cfg.reconnect_min_s, 0
        while not self.stop.wait(delay):
            attempts += 1
            self._cap = self._connect()
            if self._cap is not None:
                if self._pos:
                    self.reconnects += 1
                log.info("capture source %s: connected after %d attempt(s), %.1f s without a stream", self.name,
                         attempts, time.monotonic() - self._down_since)
                self._down = None
                return
            self._went_down(unreachable_cause(self.url, self.cfg.stream_open_timeout_s))
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
