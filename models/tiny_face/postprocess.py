"""Decoding and NMS of face-api's tiny face detector, in numpy (TinyYolov2Base.extractBoxes).

Each of the S/32 x S/32 cells has five anchors (sizes in cells, BOX_ANCHORS of
tinyFaceDetector/const.ts); a box is (col + sigmoid(x), row + sigmoid(y)) / cells for its
centre, exp(w) * anchor / cells for its size; its score is sigmoid(s). Greedy NMS at IoU 0.4.
"""
from __future__ import annotations

import numpy as np

from models.ssd_mobilenet.postprocess import hard_nms

ANCHORS = np.array([[1.603231, 2.094468], [6.041143, 7.080126], [2.882459, 3.518061], [4.266906, 5.178857],
                    [9.041765, 10.66308]], np.float64)  # (width, height) in cells
NMS_IOU = 0.4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -100, 100)))


def decode(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1, G, G, 25) raw output -> (boxes x1, y1, x2, y2 in [0, 1] of the input, scores), row by row."""
    cells = raw.shape[1]
    r = raw.reshape(cells, cells, len(ANCHORS), 5).astype(np.float64)
    rows, cols = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    cx = (cols[..., None] + _sigmoid(r[..., 0])) / cells
    cy = (rows[..., None] + _sigmoid(r[..., 1])) / cells
    w = np.exp(r[..., 2]) * ANCHORS[:, 0] / cells
    h = np.exp(r[..., 3]) * ANCHORS[:, 1] / cells
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4)
    return boxes.astype(np.float32), _sigmoid(r[..., 4]).reshape(-1).astype(np.float32)


def detect(raw: np.ndarray, size: int, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x1, y1, x2, y2 in input pixels) and scores of the detections kept by NMS."""
    boxes, scores = decode(raw)
    keep = hard_nms(boxes, scores, score_threshold, NMS_IOU, max_results=len(scores))
    return boxes[keep] * size, scores[keep]
