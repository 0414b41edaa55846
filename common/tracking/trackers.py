"""Correlation trackers by name: the one place that knows OpenCV's tracker constructors.

KCF and CSRT live in OpenCV's contrib main namespace, MOSSE only in `cv2.legacy`; their
`init` return values differ (None vs bool). `BoxTracker` hides that behind xyxy float boxes,
and clips boxes to the image because OpenCV's trackers misbehave on boxes outside it.
"""
from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("kcf", "csrt", "mosse", "none")
_FACTORIES = {
    # contrib trackers: OpenCV's stubs do not list them
    "kcf": lambda: cv2.TrackerKCF_create(),  # type: ignore[attr-defined]
    "csrt": lambda: cv2.TrackerCSRT_create(),  # type: ignore[attr-defined]
    "mosse": lambda: cv2.legacy.TrackerMOSSE_create(),  # type: ignore[attr-defined]
}
MIN_SIDE = 4  # px: smaller boxes cannot hold a correlation filter
# Filters learn on square templates whose side comes from SIDES, a ladder ~10 % apart
# (multiples of 4 px); the box reported keeps the detection's own width and height.
# OpenCV's KCF keeps heap memory for every template size it has seen: on boxes of every size
# a long-running tracker grew without end (RSS +20 % in a 30-min soak; +100 MB in 3500
# updates with re-inits on random sizes). A fixed 8 px grid still crept, and so did ladder
# widths x ladder heights (+6.5 %: a new pair kept appearing); one side per template bounds
# the sizes to a few dozen. Inits also run ~2x faster.
SIDES = tuple(sorted({round(8 * 1.1 ** k / 4) * 4 for k in range(60)}))  # 8, 12, ... 4 px apart up to 52


def _template(box: np.ndarray, shape: tuple) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The square template (integer xywh inside the image, side from SIDES, about the box's
    centre) for xyxy `box`, and the box's own size inside the image (w, h); None when too
    little of the box is inside."""
    h, w = shape[:2]
    x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x2, y2 = min(float(w), float(box[2])), min(float(h), float(box[3]))
    bw, bh = x2 - x1, y2 - y1
    if bw < MIN_SIDE or bh < MIN_SIDE:
        return None
    side = (bw * bh) ** 0.5
    fitting = [s for s in SIDES if s <= min(w, h)]
    if side >= SIDES[0] and fitting:
        side = min(fitting, key=lambda s: abs(s - side))
    side = int(round(side))
    x = min(max(0, int(round((x1 + x2 - side) / 2))), w - side)
    y = min(max(0, int(round((y1 + y2 - side) / 2))), h - side)
    return (x, y, side, side), np.array((bw, bh))


class BoxTracker:
    """One OpenCV correlation tracker following one box."""

    __slots__ = ("kind", "_impl", "_scale")

    def __init__(self, kind: str):
        self.kind = kind
        self._impl: Any = None  # the OpenCV tracker (cv2.Tracker or cv2.legacy.Tracker), made by init()
        self._scale = np.ones(2)  # box size / template size, per axis

    def init(self, image: np.ndarray, box: np.ndarray) -> bool:
        """(Re)start on `box` of `image`; False if the box is (mostly) outside the image.

        KCF and MOSSE then get one update on the same image. OpenCV's KCF learns only at its
        first update and reports the init box there, which would cost one frame of motion
        after every (re)init. MOSSE (legacy) builds an unusable filter for some box sizes
        (~15 % on face crops), and that first update is where it says so: retry 3 and 6 px
        smaller. CSRT needs neither and its update costs ~25 ms, so it is not given one.
        """
        found = _template(box, image.shape)
        if found is None:
            return False
        (x, y, w, h), size = found
        for shrink in (0, 3, 6) if self.kind == "mosse" else (0,):
            self._impl = _FACTORIES[self.kind]()  # a fresh filter: OpenCV trackers do not re-init cleanly
            try:
                ok = self._impl.init(image, (x, y, w - shrink, h - shrink))
                if self.kind != "csrt":
                    ok, _ = self._impl.update(image)
            except cv2.error as exc:
                log.debug("%s init failed on %s: %s", self.kind, (x, y, w, h), exc)
                return False
            if ok is None or ok:
                self._scale = size / (w - shrink)
                return True
        log.debug("%s could not learn %s", self.kind, (x, y, w, h))
        return False

    def update(self, image: np.ndarray) -> np.ndarray | None:
        """The box on this image (the template's centre, the box's own size scaled as the
        template scaled), or None when the tracker reports failure or leaves the image."""
        ok, (x, y, w, h) = self._impl.update(image)
        if not ok or w < MIN_SIDE or h < MIN_SIDE:
            return None
        half = np.array((w, h), dtype=np.float64) * self._scale / 2
        centre = np.array((x + w / 2, y + h / 2), dtype=np.float64)
        box = np.concatenate((centre - half, centre + half))
        ih, iw = image.shape[:2]
        if box[2] <= 0 or box[3] <= 0 or box[0] >= iw or box[1] >= ih:
            return None
        return box


def create_tracker(kind: str) -> BoxTracker | None:
    """A tracker of `kind` (kcf | csrt | mosse), or None for "none" (detector every frame)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tracker kind {kind!r} (known: {', '.join(KINDS)})")
    return None if kind == "none" else BoxTracker(kind)
