"""Correlation trackers by name: the one place that knows OpenCV's tracker constructors.

KCF and CSRT live in OpenCV's contrib main namespace, MOSSE only in `cv2.legacy`; their
`init` return values differ (None vs bool). `BoxTracker` hides that behind xyxy float boxes,
and clips boxes to the image because OpenCV's trackers misbehave on boxes outside it.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

KINDS = ("kcf", "csrt", "mosse", "none")
_FACTORIES = {
    "kcf": lambda: cv2.TrackerKCF_create(),
    "csrt": lambda: cv2.TrackerCSRT_create(),
    "mosse": lambda: cv2.legacy.TrackerMOSSE_create(),
}
MIN_SIDE = 4  # px: smaller boxes cannot hold a correlation filter
# Filters start on boxes whose sides come from SIDES, a ladder ~10 % apart (multiples of 4 px).
# OpenCV's KCF keeps heap memory for every template size it has seen: on boxes of every size
# a long-running tracker grew without end (RSS +20 % in a 30-min soak; +100 MB in 3500
# updates with re-inits on random sizes); on a few dozen sizes it stays flat (a fixed 8 px
# grid still crept: w and h vary apart). Inits also run ~2x faster.
SIDES = tuple(sorted({round(8 * 1.1 ** k / 4) * 4 for k in range(60)}))  # 8, 12, ... 4 px apart up to 52


def _snap(lo: int, hi: int, limit: int) -> tuple[int, int]:
    """Start and length of [lo, hi) resized to the nearest side in SIDES that fits in
    [0, limit), about its centre; sides under SIDES[0] stay as they are."""
    side = hi - lo
    fitting = [s for s in SIDES if s <= limit]
    snapped = min(fitting, key=lambda s: abs(s - side)) if side >= SIDES[0] and fitting else side
    start = lo + (side - snapped) // 2
    return min(max(0, start), limit - snapped), snapped


def _clip_xywh(box: np.ndarray, shape: tuple) -> tuple[int, int, int, int] | None:
    """xyxy float → integer xywh inside the image with sides snapped to SIDES, or None when
    too little of it is inside."""
    h, w = shape[:2]
    x1, y1 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x2, y2 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
        return None
    (x, bw), (y, bh) = _snap(x1, x2, w), _snap(y1, y2, h)
    return x, y, bw, bh


class BoxTracker:
    """One OpenCV correlation tracker following one box."""

    __slots__ = ("kind", "_impl")

    def __init__(self, kind: str):
        self.kind = kind
        self._impl = None

    def init(self, image: np.ndarray, box: np.ndarray) -> bool:
        """(Re)start on `box` of `image`; False if the box is (mostly) outside the image.

        KCF and MOSSE then get one update on the same image. OpenCV's KCF learns only at its
        first update and reports the init box there, which would cost one frame of motion
        after every (re)init. MOSSE (legacy) builds an unusable filter for some box sizes
        (~15 % on face crops), and that first update is where it says so: retry 3 and 6 px
        smaller. CSRT needs neither and its update costs ~25 ms, so it is not given one.
        """
        rect = _clip_xywh(box, image.shape)
        if rect is None:
            return False
        x, y, w, h = rect
        for shrink in (0, 3, 6) if self.kind == "mosse" else (0,):
            self._impl = _FACTORIES[self.kind]()  # a fresh filter: OpenCV trackers do not re-init cleanly
            try:
                ok = self._impl.init(image, (x, y, w - shrink, h - shrink))
                if self.kind != "csrt":
                    ok, _ = self._impl.update(image)
            except cv2.error as exc:
                log.debug("%s init failed on %s: %s", self.kind, rect, exc)
                return False
            if ok is None or ok:
                return True
        log.debug("%s could not learn %s", self.kind, rect)
        return False

    def update(self, image: np.ndarray) -> np.ndarray | None:
        """The box on this image, or None when the tracker reports failure or leaves the image."""
        ok, (x, y, w, h) = self._impl.update(image)
        if not ok or w < MIN_SIDE or h < MIN_SIDE:
            return None
        box = np.array((x, y, x + w, y + h), dtype=np.float64)
        ih, iw = image.shape[:2]
        if box[2] <= 0 or box[3] <= 0 or box[0] >= iw or box[1] >= ih:
            return None
        return box


def create_tracker(kind: str) -> BoxTracker | None:
    """A tracker of `kind` (kcf | csrt | mosse), or None for "none" (detector every frame)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tracker kind {kind!r} (known: {', '.join(KINDS)})")
    return None if kind == "none" else BoxTracker(kind)
