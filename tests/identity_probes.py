"""Aligned face chips from the shared test data, for the identity tests.

OTB sequences: per frame, the detection whose box centre lies inside the gt box (the gt
boxes the whole head, BlazeFace the face: IoU would punish a correct detection). WIDER
sample: detections whose centre lies inside a valid gt face at least `min_px` wide, one
per gt face. Faces with eyes closer than `min_eye_px` are left out, as the service does.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.dataset import DATA_DIR
from models.facerec.align import align
from models.facerec.quality import eye_distance

DATA = DATA_DIR


def _centre_inside(box, gt) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return gt[0] <= cx <= gt[2] and gt[1] <= cy <= gt[3]


def _face_in(found, gt, min_eye_px: float):
    """Keypoints of the best detection centred in `gt`, or None."""
    best = None
    for box, score, kps in zip(found.boxes, found.scores, found.keypoints):
        if _centre_inside(box, gt) and eye_distance(kps) >= min_eye_px and (best is None or score > best[0]):
            best = (score, kps)
    return None if best is None else best[1]


def otb_gt(seq: str) -> dict[int, np.ndarray]:
    rows = np.loadtxt(DATA / seq / "gt" / "gt.txt", delimiter=",")
    return {int(r[0]): np.array([r[2] - 1, r[3] - 1, r[2] - 1 + r[4], r[3] - 1 + r[5]]) for r in rows}


def otb_chips(seq: str, detector, frames, min_eye_px: float) -> dict[int, np.ndarray]:
    """frame number -> aligned chip of the annotated face, for the frames where it was found."""
    gt = otb_gt(seq)
    out = {}
    for frame in frames:
        image = cv2.imread(str(DATA / seq / "img1" / f"{frame:06d}.jpg"))
        kps = _face_in(detector.detect(image), gt[frame], min_eye_px)
        if kps is not None:
            out[frame] = align(image, kps)
    return out


def wider_faces(min_px: float) -> dict[str, list[np.ndarray]]:
    """image path -> valid gt boxes (xyxy) at least `min_px` wide."""
    lines = (DATA / "widerface-sample" / "gt.txt").read_text().split("\n")
    out, i = {}, 0
    while i < len(lines) and lines[i].strip():
        name, count = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, line.split()[:8])) for line in lines[i + 2:i + 2 + max(count, 1)]]
        boxes = [np.array([x, y, x + w, y + h]) for x, y, w, h, _b, _e, _il, invalid in rows[:count]
                 if w >= min_px and not invalid]
        if boxes:
            out[str(DATA / "widerface-sample" / "images" / name)] = boxes
        i += 2 + max(count, 1)
    return out


def wider_chips(detector, min_px: float, min_eye_px: float) -> list[np.ndarray]:
    chips = []
    for path, boxes in wider_faces(min_px).items():
        image = cv2.imread(path)
        found = detector.detect(image)
        for gt in boxes:
            kps = _face_in(found, gt, min_eye_px)
            if kps is not None:
                chips.append(align(image, kps))
    return chips

