"""A video file (or the demo clip), decoded with OpenCV's bundled FFmpeg, frame after frame."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from common.service import InputError
from services.sources.base import Source, SourceInfo


class VideoFileSource(Source):
    """Frames of one video file; position = frame index from 0. Capture paces it to its fps."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or str(path)
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._buf: np.ndarray | None = None

    def _fail(self, cause: str) -> InputError:
        where = "" if self.name == str(self.path) else f" ({self.path})"
        return InputError(f"capture source {self.name}: {cause}{where}")

    def open(self) -> SourceInfo:
        if not self.path.exists():
            raise self._fail("no such file")
        if not self.path.is_file():
            raise self._fail("not a file")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if not cap.isOpened() or width <= 0 or height <= 0:
            cap.release()
            raise self._fail("cannot decode it as a video")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._cap, self._pos = cap, 0
        return SourceInfo(width, height, fps if math.isfinite(fps) and 0 < fps < 1000 else 0.0, live=False)

    def read(self) -> tuple[np.ndarray, int] | None:
        assert self._cap is not None, "read() before open()"
        ok, frame = self._cap.read(self._buf)
        if not ok:
            return None
        self._buf = frame
        self._pos += 1
        return frame, self._pos - 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
