"""Anchors, box decoding and NMS of face-api's SSD-MobileNet-v1, in numpy.

The network ships its anchors for a 512 input (`Output/extra_dim`); `anchors(size)` makes
them for any input size with the TF Object Detection API's multiple-grid generator that made
them (six maps, scales 0.2 to 0.95, aspect ratios 1, 2, 1/2, 3, 1/3 and a square of the
interpolated scale after the first; the lowest map only (0.1, 1), (0.2, 2), (0.2, 1/2)); a test checks it reproduces the
shipped 512 anchors. Decoding and NMS are outputLayer.ts and nonMaxSuppression.ts: centre
offsets scaled by 10, sizes by 5, exp; sigmoid of the face class; greedy hard NMS at IoU 0.5.
"""
from __future__ import annotations

import math

import numpy as np

from models.blazeface.postprocess import iou_one_to_many

MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECTS = (1.0, 2.0, 0.5, 3.0, 1 / 3)
LOWEST = ((0.1, 1.0), (MIN_SCALE, 2.0), (MIN_SCALE, 0.5))
STRIDES = (16, 32, 64, 128, 256, 512)  # of the six predictor maps, for an input of 512
NMS_IOU = 0.5
MAX_RESULTS = 100


def feature_sizes(size: int) -> list[int]:
    """Sides of the six predictor maps for a square input: stride 16 and 32, then halving ('same' padding)."""
    sides = [math.ceil(size / 16), math.ceil(size / 32)]
    while len(sides) < 6:
        sides.append(math.ceil(sides[-1] / 2))
    return sides


def anchors(size: int) -> np.ndarray:
    """(A, 4) anchors ymin, xmin, ymax, xmax in [0, 1] units of the input, in the network's order."""
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / 5 for i in range(6)] + [1.0]
    out = []
    for layer, side in enumerate(feature_sizes(size)):
        if layer == 0:
            shapes = list(LOWEST)
        else:
            shapes = [(scales[layer], a) for a in ASPECTS]
            shapes.insert(1, (math.sqrt(scales[layer] * scales[layer + 1]), 1.0))  # after the square one
        centres = (np.arange(side, dtype=np.float64) + 0.5) / side
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        hw = np.array([(s / math.sqrt(a), s * math.sqrt(a)) for s, a in shapes])  # (K, 2) height, width
        cell = np.stack([cy.ravel(), cx.ravel()], 1)[:, None, :]  # (cells, 1, 2)
        out.append(np.concatenate([cell - hw / 2, cell + hw / 2], 2).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def decode(encodings: np.ndarray, logits: np.ndarray, anchor_boxes: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs -> (boxes ymin, xmin, ymax, xmax in [0, 1] of the input, face scores): outputLayer.ts."""
    enc = encodings.reshape(-1, 4).astype(np.float64)
    a = anchor_boxes.astype(np.float64)
    size = a[:, 2:] - a[:, :2]
    centre = a[:, :2] + size / 2
    c = enc[:, :2] / 10 * size + centre
    half = np.exp(enc[:, 2:] / 5) * size / 2
    boxes = np.concatenate([c - half, c + half], 1)
    scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1, 3)[:, 1].astype(np.float64), -100, 100)))
    return boxes.astype(np.float32), scores.astype(np.float32)


def hard_nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou: float = NMS_IOU,
             max_results: int = MAX_RESULTS) -> np.ndarray:
    """Indices kept by greedy NMS over the scores above the threshold, best first (nonMaxSuppression.ts)."""
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    keep: list[int] = []
    for i in order:
        if len(keep) >= max_results:
            break
        if not keep or (iou_one_to_many(boxes[i], boxes[keep]) <= iou).all():
            keep.append(int(i))
    return np.asarray(keep, np.int64)


def to_input_pixels(boxes_yx: np.ndarray, size: int) -> np.ndarray:
    """(N, 4) ymin, xmin, ymax, xmax in [0, 1] -> x1, y1, x2, y2 in input pixels, clipped to the input."""
    clipped = np.clip(boxes_yx, 0.0, 1.0)
    return (clipped[:, [1, 0, 3, 2]] * size).astype(np.float32)
