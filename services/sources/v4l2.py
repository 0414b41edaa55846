"""A V4L2 video device (USB webcam, HDMI grabber): `v4l2:///dev/video0` or `/dev/video0`.

MJPG is asked for first: most USB webcams give 640x480 at 30 fps only in MJPG, and
decoding it costs less CPU than moving raw YUYV over USB 2 at a lower rate.
"""
from __future__ import annotations

import logging
import math
import os

import cv2
import numpy as np

from common.config import CaptureConfig
from common.service import InputError
from services.sources.base import Source, SourceInfo

log = logging.getLogger(__name__)


class V4L2Source(Source):
    """Frames of one V4L2 device at the size and rate it grants; position counts frames."""

    def __init__(self, device: str, capture: CaptureConfig, name: str | None = None):
        self.device = device
        self.capture = capture
        self.name = name or device
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._buf: np.ndarray | None = None

    def open(self) -> SourceInfo:
        if not os.path.exists(self.device):
            raise InputError(f"capture source {self.name}: no such device")
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise InputError(f"capture source {self.name}: cannot open (busy, no permission, or not a capture device)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        if self.capture.width and self.capture.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.capture.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.capture.height)
        if self.capture.fps:
            cap.set(cv2.CAP_PROP_FPS, self.capture.fps)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._cap, self._pos = cap, 0
        log.info("capture source %s: device grants %dx%d at %.1f fps", self.name, width, height, fps)
        return SourceInfo(width, height, fps if math.isfinite(fps) and fps > 0 else 0.0, live=True)

    def read(self) -> tuple[np.ndarray, int] | None:
        assert self._cap is not None, "read() before open()"
        ok, frame = self._cap.read(self._buf)
        if not ok:
            raise InputError(f"capture source {self.name}: read failed (device unplugged?)")
        self._buf = frame
        self._pos += 1
        return frame, self._pos - 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
