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


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes (scalar code: the per-track checks run on every detection)."""
    ax1, ay1, ax2, ay2 = a.tolist()
    bx1, by1, bx2, by2 = b.tolist()
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0


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


def associate_by_centre(track_boxes: np.ndarray, det_boxes: np.ndarray, max_dist: np.ndarray):
    """Second chance for what IoU could not pair: a face that turned, changed size or whose
    tracker drifted or froze. Distance between centres in units of the track's size
    (sqrt of its area), assigned optimally, refused beyond each track's `max_dist`.
    Same return as `associate`."""
    n, m = len(track_boxes), len(det_boxes)
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    max_dist = np.broadcast_to(np.asarray(max_dist, dtype=np.float64), (n,))[:, None]
    t = np.asarray(track_boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    ct, cd = (t[:, :2] + t[:, 2:]) / 2, (d[:, :2] + d[:, 2:]) / 2
    size = np.sqrt(np.maximum(np.prod(t[:, 2:] - t[:, :2], axis=1), 1e-6))
    dist = np.linalg.norm(ct[:, None, :] - cd[None, :, :], axis=2) / size[:, None]
    ok = dist <= max_dist
    rows, cols = linear_sum_assignment(np.where(ok, dist, 1e6))
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]
    matched_t = {r for r, _ in matches}
    matched_d = {c for _, c in matches}
    return (matches, [i for i in range(n) if i not in matched_t], [j for j in range(m) if j not in matched_d])
