"""Privacy view: the live view with every tracked face blurred instead of boxed.

Serves the same routes as the live view (`/`, `/stream.mjpg`, `/snapshot.jpg`,
`/tracks.json`, `/healthz`, `/metrics`) on its own port (`sink.privacy_port`), so a screen in
a shop or a hallway can show the scene without showing who is in it. Each track's box,
grown by `MARGIN` on every side (boxes from BlazeFace are tight around the face: hair and
ears would stay recognisable), is pixelated and then smoothed; pixels outside every box
are passed through untouched. Tracks in every state are blurred, lost ones included.
Names from the identity service are never shown here, neither drawn nor in /tracks.json.

Limit: a face is blurred from the first frame on which the tracker publishes it (after
`tracker.min_hits` detections); a face nobody has detected yet is not blurred.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np

from common.config import HttpConfig, SinkConfig
from common.prometheus import StackMetrics
from services.sinks.live_page import PAGE
from services.sinks.live_view import LiveView
from services.sinks.pairing import Paired

def blur_region(width: int, height: int, box, margin: float) -> tuple[int, int, int, int] | None:
    """The integer pixel rectangle (x1, y1, x2, y2), end-exclusive, blurred for `box`."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    ix1, iy1 = max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my)))
    ix2, iy2 = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
    if ix2 - ix1 < 2 or iy2 - iy1 < 2:
        return None
    return ix1, iy1, ix2, iy2


def blur_faces(image: np.ndarray, boxes, margin: float, blocks: int) -> np.ndarray:
    """Blur each box (grown by `margin`, reduced to about `blocks` blocks across) in place; return `image`."""
    h, w = image.shape[:2]
    for box in boxes:
        region = blur_region(w, h, box, margin)
        if region is None:
            continue
        x1, y1, x2, y2 = region
        roi = image[y1:y2, x1:x2]
        rw, rh = x2 - x1, y2 - y1
        step = max(2, max(rw, rh) // blocks)
        small = cv2.resize(roi, (max(1, rw // step), max(1, rh // step)), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_LINEAR)
        k = step | 1
        roi[...] = cv2.GaussianBlur(coarse, (k, k), 0)
    return image


class PrivacyView(LiveView, kind="privacy"):
    """A live view whose faces are blurred (and whose names are never shown, nor snapshots made)."""
    wants_snapshots = False

    @staticmethod
    def default_port(cfg) -> int:
        return cfg.sink.privacy_port

    def __init__(self, cfg: SinkConfig, port: int, stack: str, metrics: StackMetrics, http: HttpConfig,
                 snapshots: Path):
        super().__init__(cfg, port, stack, metrics, http, snapshots)
        self.page = PAGE.format(stack=f"{stack} (faces blurred)").encode()
        self.blurred = 0

    def handle(self, paired: Paired) -> None:
        record = dataclasses.replace(paired, names={}).record(time.time())  # who it is stays private
        boxes = [t.box for t in paired.tracks.tracks]
        self.blurred += len(boxes)
        self.latest.put(blur_faces(paired.pixels, boxes, self.cfg.privacy_margin, self.cfg.privacy_blocks), record)

    def track_snapshot(self, key: str) -> None:
        return None  # faces stay private: /snapshots/ answers 404 here

    def stats(self) -> dict[str, float]:
        return {**super().stats(), "faces_blurred": self.blurred}
