"""Privacy view: the live view with every tracked face blurred instead of boxed.

Serves the video feed's routes and only those (`/`, `/stream.mjpg`, `/snapshot.jpg`,
`/tracks.json`, `/healthz`, `/metrics`: view_http.VideoFeed) on its own port
(`sink.privacy_port`), so a screen in a shop or a hallway can show the scene without showing who is in it. Each track's box,
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

import cv2
import numpy as np

from common.config import HttpConfig, SinkConfig
from common.prometheus import StackMetrics
from services.sinks.base import Sink
from services.sinks.live_page import PAGE
from services.sinks.pairing import Paired
from services.sinks.view_http import Routes, ServedView, VideoFeed


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


class PrivacyView(Sink, kind="privacy"):
    """Blurred video and anonymous tracks: the VideoFeed's routes and nothing else (an allow-list).

    It shares no class with the live view: a route or feature added there does not reach
    this one unless it is added here, on purpose. Names are never shown (nor drawn, nor in
    /tracks.json), no snapshots are made or served.
    """
    latest_only = True
    wants_metrics = True
    options = ("port",)

    @classmethod
    def from_context(cls, ctx) -> PrivacyView:
        cfg, port = ctx.config, ctx.args.port
        return cls(cfg.sink, cfg.sink.privacy_port if port is None else port, cfg.stack.id,
                   StackMetrics(cfg.monitor.interval_s, cfg.watchdog.silent_periods), cfg.http)

    def __init__(self, cfg: SinkConfig, port: int, stack: str, metrics: StackMetrics, http: HttpConfig):
        self.cfg = cfg
        self.feed = VideoFeed(cfg, metrics, PAGE.format(stack=f"{stack} (faces blurred)").encode())
        self.served = ServedView(f"sink {self.kind}", cfg.http_host, port, http, cfg.client_timeout_s)
        self.blurred = 0

    def routes(self) -> Routes:
        """The allow-list: the video feed's routes only."""
        return self.feed.routes()

    def start(self) -> None:
        self.served.start(self.routes())

    @property
    def url(self) -> str:
        return self.served.url

    def handle(self, paired: Paired) -> None:
        record = dataclasses.replace(paired, names={}).record(time.time())  # who it is stays private
        boxes = [t.box for t in paired.tracks.tracks]
        self.blurred += len(boxes)
        self.feed.put(blur_faces(paired.pixels, boxes, self.cfg.privacy_margin, self.cfg.privacy_blocks), record)

    def on_metrics(self, msg) -> None:
        self.feed.metrics_table.update(msg)

    def on_down(self, down: dict[str, str]) -> None:
        self.feed.set_down(down)

    def on_silence(self, quiet_s: float) -> None:
        self.feed.silence()

    def stats(self) -> dict[str, float]:
        return {**self.feed.stats(), **self.served.stats(), "faces_blurred": self.blurred}

    def close(self) -> None:
        self.feed.close()
        self.served.close()
