"""Pre- and post-processing around the raw network, in numpy (what MediaPipe's graph does).

Preprocessing letterboxes: the frame is scaled to fit the square input with its aspect
ratio kept and the rest padded black (-1 after scaling). Stretching a 4:3 frame to a square
would squash every face horizontally; BlazeFace was trained on undistorted faces and its
anchors are square, so squashed faces score lower and their boxes come out too narrow.
Post-processing: MediaPipe's SSD anchors, box + 6 keypoint decoding, and its weighted NMS
(overlapping detections are blended, weighted by score, instead of being dropped).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe's SsdAnchorsCalculator options (face_detection_{short,full}_range.pbtxt).
# All use fixed_anchor_size, so an anchor is a centre with width = height = 1.
ANCHOR_OPTIONS = {
    "short": dict(size=128, strides=(8, 16, 16, 16), anchors_per_layer=2),  # aspect 1 + interpolated
    "full": dict(size=192, strides=(4,), anchors_per_layer=1),  # interpolated_scale_aspect_ratio 0
}
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion


def ssd_anchors(size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """(A, 2) anchor centres (x, y) in [0, 1]; layers sharing a stride share one feature map."""
    out = []
    for stride, layers in itertools.groupby(strides):
        fm = -(-size // stride)
        c = (np.arange(fm, dtype=np.float32) + 0.5) / fm
        yy, xx = np.meshgrid(c, c, indexing="ij")
        per_cell = len(list(layers)) * anchors_per_layer
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the square input: input = frame * scale + (pad_x, pad_y)."""
    scale: float
    pad_x: int
    pad_y: int


def preprocess(frame_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 frame -> (1, size, size, 3) float32 RGB in [-1, 1] (NHWC, as the .tflite), letterboxed."""
    h, w = frame_bgr.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = cv2.resize(frame_bgr, (nw, nh), interpolation=interp)
    blob = np.subtract(canvas[None, :, :, ::-1], np.float32(127.5), dtype=np.float32)
    blob *= np.float32(1 / 127.5)
    return blob, Letterbox(scale, px, py)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, size: int,
           score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs -> (boxes xyxy, scores, keypoints (N, 6, 2)) in input pixels, above threshold."""
    scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= score_threshold)
    raw = regressors.reshape(-1, 16)[keep]
    centre = anchors[keep] * size
    cxy = raw[:, :2] + centre
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([cxy - half, cxy + half], 1)
    kps = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + centre[:, None, :]
    return boxes.astype(np.float32), scores[keep].astype(np.float32), kps.astype(np.float32)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, iou_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-max suppression.

    Take the best remaining detection and every remaining one overlapping it by more than
    `iou_threshold`; output their score-weighted mean box and keypoints with the best score.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, kps = boxes[order], scores[order], kps[order]
    out_b, out_s, out_k = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        overlap = iou_one_to_many(boxes[remaining[0]], boxes[remaining]) > iou_threshold
        overlap[0] = True
        group = remaining[overlap]
        w = scores[group][:, None]
        out_b.append((boxes[group] * w).sum(0) / w.sum())
        out_k.append((kps[group] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[group[0]])
        remaining = remaining[~overlap]
    if not out_s:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32)
    return (np.asarray(out_b, np.float32), np.asarray(out_s, np.float32), np.asarray(out_k, np.float32))


def to_frame(boxes: np.ndarray, kps: np.ndarray, lb: Letterbox, frame_shape: tuple[int, ...]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Undo the letterbox: input pixels -> original frame pixels; boxes clipped to the frame."""
    h, w = frame_shape[:2]
    offset = np.array([lb.pad_x, lb.pad_y], np.float32)
    boxes = ((boxes.reshape(-1, 2, 2) - offset) / lb.scale).reshape(-1, 4)
    boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    kps = ((kps - offset) / lb.scale).astype(np.float32)
    return boxes, kps
