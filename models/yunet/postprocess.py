"""Around the raw network, in numpy: the frame placed in the input, decode and NMS.

Preprocessing keeps the frame's aspect: it is scaled to fit `input_size` (width, height)
and padded right and bottom to multiples of 32 with black, as libfacedetection and
OpenCV's FaceDetectorYN pad. Decoding is theirs: a cell (r, c) at stride s has its prior at
(c s, r s); the box centre is prior + (dx, dy) s, its size exp(dw, dh) s; landmark k is
prior + (kx, ky) s; the score is sqrt(sigmoid(cls) sigmoid(obj)). NMS is greedy, best first
(libfacedetection's `detection_output`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .spec import NUM_KEYPOINTS, STRIDES, padded_size


@dataclass(frozen=True)
class Placement:
    """How a frame sits in the input: input x = frame x * scale_x (y likewise), at the top left."""
    scale_x: float
    scale_y: float

    def to_frame(self, boxes: np.ndarray, kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) and keypoints (N, K, 2) from input pixels to frame pixels."""
        s = np.array([self.scale_x, self.scale_y], np.float32)
        return (boxes.reshape(-1, 2, 2) / s).reshape(-1, 4), kps / s


def fit(frame_shape: tuple[int, ...], input_size: tuple[int, int]) -> tuple[int, int, float]:
    """(width, height, scale) of the frame scaled to fit inside input_size, aspect kept."""
    h, w = frame_shape[:2]
    scale = min(input_size[0] / w, input_size[1] / h)
    return max(1, round(w * scale)), max(1, round(h * scale)), scale


def network_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """The network's (width, height) for `input_size`: padded to multiples of 32."""
    return padded_size(*input_size)


def preprocess(frame_bgr: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, Placement]:
    """BGR uint8 frame -> (1, H, W, 3) float32 BGR 0-255 (NHWC), H, W = network_size(input_size)."""
    nw, nh, scale = fit(frame_bgr.shape, input_size)
    pw, ph = network_size(input_size)
    h, w = frame_bgr.shape[:2]
    if (nw, nh) != (w, h):
        frame_bgr = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    blob = np.zeros((1, ph, pw, 3), np.float32)
    blob[0, :nh, :nw] = frame_bgr
    return blob, Placement(nw / w, nh / h)


def priors(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """((cells, 2) prior x y, (cells,) stride) for a network input of (width, height)."""
    xy, stride = [], []
    for s in STRIDES:
        rows, cols = height // s, width // s
        yy, xx = np.meshgrid(np.arange(rows, dtype=np.float32) * s, np.arange(cols, dtype=np.float32) * s,
                             indexing="ij")
        xy.append(np.stack([xx.ravel(), yy.ravel()], 1))
        stride.append(np.full(rows * cols, s, np.float32))
    return np.concatenate(xy), np.concatenate(stride)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x.astype(np.float64), -88.3762626647949, 88.3762626647949)))


def decode(raw: np.ndarray, width: int, height: int, score_threshold: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1, cells, 16) raw output -> (boxes xyxy, scores, keypoints (N, 5, 2)) in input pixels, above threshold."""
    raw = raw.reshape(-1, raw.shape[-1])
    scores = np.sqrt(sigmoid(raw[:, 0]) * sigmoid(raw[:, 1]))
    keep = np.flatnonzero(scores >= score_threshold)
    xy, stride = priors(width, height)
    xy, stride, cell = xy[keep], stride[keep, None], raw[keep].astype(np.float64)
    centre = cell[:, 2:4] * stride + xy
    size = np.exp(cell[:, 4:6]) * stride
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
    kps = cell[:, 6:6 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) * stride[:, :, None] + xy[:, None, :]
    return boxes.astype(np.float32), scores[keep].astype(np.float32), kps.astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, iou_threshold: float, top_k: int = 1000
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy NMS, best first: a box is kept unless it overlaps a kept one by more than iou_threshold."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    boxes64 = boxes.astype(np.float64)
    areas = np.prod(boxes64[:, 2:] - boxes64[:, :2], axis=1)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            lt = np.maximum(boxes64[i, :2], boxes64[k, :2])
            rb = np.minimum(boxes64[i, 2:], boxes64[k, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            if np.any(inter / np.maximum(areas[i] + areas[k] - inter, 1e-12) > iou_threshold):
                continue
        kept.append(int(i))
    idx = np.asarray(kept, np.int64)
    return boxes[idx], scores[idx], kps[idx]
