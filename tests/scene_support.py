"""Scenes for the tracking tests: real face crops (OTB FaceOcc1 and Girl frames, cut at their gt
boxes, one crop per frame so the face changes like in video) pasted onto a real background (a
WIDER photo without annotated faces), the pasted rectangles being the exact ground truth.

The `faces` and `background` fixtures are registered for every test module by tests/conftest.py.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.config import TrackerConfig, replace
from common.tracking import FrameDetections, iou_matrix
from models.dataset import DATA_DIR

DATA = DATA_DIR
BACKGROUND = DATA / "widerface-sample/images/0--Parade/0_Parade_Parade_0_275.jpg"  # 416x328, 0 faces
FACE_W, FACE_H = 64, 80

def _crops(seq: str, count: int) -> list[np.ndarray]:
    gt = np.loadtxt(DATA / seq / "gt/gt.txt", delimiter=",")
    out = []
    for frame, _, x, y, w, h, *_ in gt[:count]:
        image = cv2.imread(str(DATA / seq / "img1" / f"{int(frame):06d}.jpg"))
        x, y = int(x) - 1, int(y) - 1  # gt is 1-based
        out.append(cv2.resize(image[y:y + int(h), x:x + int(w)], (FACE_W, FACE_H), interpolation=cv2.INTER_AREA))
    return out


@pytest.fixture(scope="module")
def faces() -> dict[str, list[np.ndarray]]:
    return {"A": _crops("OTB-FaceOcc1-A", 60), "B": _crops("OTB-Girl-A", 60)}


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    return cv2.imread(str(BACKGROUND))


def render(background, faces, placements):
    """Frame with faces pasted in order (later ones on top); returns (image, {name: box}, {name: visible})."""
    image = background.copy()
    h, w = image.shape[:2]
    boxes, masks = {}, {}
    for name, t, x, y in placements:
        crop = faces[name][t % len(faces[name])]
        x1, y1, x2, y2 = max(0, x), max(0, y), min(w, x + FACE_W), min(h, y + FACE_H)
        image[y1:y2, x1:x2] = crop[y1 - y:y2 - y, x1 - x:x2 - x]
        boxes[name] = np.array([x, y, x + FACE_W, y + FACE_H], dtype=np.float64)
        for other in masks.values():
            other[y1:y2, x1:x2] = False
        masks[name] = np.zeros((h, w), bool)
        masks[name][y1:y2, x1:x2] = True
    visible = {name: masks[name].sum() / (FACE_W * FACE_H) for name in masks}
    return image, boxes, visible


def detections(frame_id, boxes, visible, min_visible=0.5) -> FrameDetections:
    """What a perfect detector reports: every face at least half visible, left to right
    (so the order changes when faces cross, as it does with a real detector)."""
    seen = sorted((boxes[n] for n in boxes if visible[n] >= min_visible), key=lambda b: b[0])
    return FrameDetections(frame_id, np.array(seen).reshape(-1, 4), np.ones(len(seen)))


def config(**changes) -> TrackerConfig:
    base = TrackerConfig(kind="kcf", match_iou=0.3, min_hits=2, max_lost_s=20 / 30, drift_iou=0.5,
                         adaptive=False, interval_min=3, interval_max=3, history=64)
    return replace(base, **changes)


def track_on(tracks, box, min_iou=0.5):
    """The published, confirmed track covering `box`, or None."""
    best = max(tracks, key=lambda t: iou_matrix(np.array(t.box), box)[0, 0], default=None)
    if best is None or best.state != "confirmed" or iou_matrix(np.array(best.box), box)[0, 0] < min_iou:
        return None
    return best


def run(manager, scene, every=3, delay=0):
    """Feed `scene` (frame_id → (image, boxes, visible)); detections of every `every`th frame
    reach the manager `delay` frames late. Returns {frame_id: tracks}."""
    out, queue = {}, {}
    for fid, (image, boxes, visible) in scene:
        if fid % every == 0:
            queue[fid + delay] = detections(fid, boxes, visible)
        out[fid] = manager.step(fid, image, queue.pop(fid, None))
    return out
