"""Detections to tracks: IoU cost, Hungarian assignment, gated at a minimum IoU."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N,4) with every box in `b` (M,4), xyxy → (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def associate(track_boxes: np.ndarray, det_boxes: np.ndarray, min_iou: float):
    """Optimal one-to-one matching maximising total IoU; pairs below `min_iou` are refused.

    Returns (matches [(track_index, det_index)], unmatched track indices, unmatched det indices).
    Gating after the assignment (not before) keeps the assignment optimal over the valid pairs
    because refused pairs are given zero weight.
    """
    n, m = len(track_boxes), len(det_boxes)
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    iou = iou_matrix(track_boxes, det_boxes)
    rows, cols = linear_sum_assignment(np.where(iou >= min_iou, iou, 0.0), maximize=True)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
    matched_t = {r for r, _ in matches}
    matched_d = {c for _, c in matches}
    return (matches, [i for i in range(n) if i not in matched_t], [j for j in range(m) if j not in matched_d])
