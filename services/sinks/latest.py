"""The newest annotated frame, shared by every HTTP client of the live view.

The bus loop only swaps in a new image and wakes waiters (a condition variable): it never
encodes and never waits for a client. The JPEG is encoded once per frame, lazily, by the
first client that asks for it, and the bytes are shared by all the others; with nobody
watching nothing is encoded. A slow client simply finds a newer frame when it comes back.
"""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np


class LatestFrame:
    def __init__(self, jpeg_quality: int):
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._record: dict | None = None
        self._seq = 0
        self._t = 0.0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self.closed = False
        self.encoded = 0
        self.encode_ms = 0.0

    def put(self, image: np.ndarray, record: dict) -> None:
        """Publish a new frame (the caller hands over `image` and must not change it again)."""
        with self._cond:
            self._image, self._record = image, record
            self._seq += 1
            self._t = time.monotonic()
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting client so it can end its response."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def forget_tracks(self) -> None:
        """The video stopped: the newest record keeps its frame, with no tracks (`stale`: true)."""
        with self._cond:
            if self._record is not None:
                self._record = {**self._record, "tracks": [], "stale": True}

    def record(self) -> dict | None:
        with self._cond:
            return self._record

    def age_s(self) -> float | None:
        """Seconds since the last frame, None before the first."""
        with self._cond:
            return None if self._seq == 0 else time.monotonic() - self._t

    def wait_newer(self, seq: int, timeout: float) -> int:
        """Block until a frame newer than `seq` exists (or timeout/close); returns the newest seq."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq or self.closed, timeout)
            return self._seq

    def jpeg(self) -> tuple[int, bytes] | None:
        """(seq, JPEG bytes) of the newest frame, encoding it if no one has yet; None before the first."""
        with self._encode_lock:
            with self._cond:
                seq, image = self._seq, self._image
            if image is None:
                return None
            if self._jpeg[0] != seq:
                t0 = time.perf_counter()
                ok, buf = cv2.imencode(".jpg", image, self._params)
                if not ok:
                    raise RuntimeError("JPEG encoding failed")
                self.encode_ms = (time.perf_counter() - t0) * 1000
                self.encoded += 1
                self._jpeg = (seq, buf.tobytes())
            return self._jpeg
