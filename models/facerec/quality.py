"""How good a view of a face is for the descriptor, from the detector's keypoints alone (BlazeFace's or YuNet's: both start right eye, left eye, nose tip).

The service embeds a track once and again only for a clearly better view, so it needs a
cheap score: the eye distance in pixels (capped where the 150x150 chip stops gaining detail),
times frontality (the nose tip's offset from the eyes' midpoint along the eye line, 0 when
frontal, 1 when it reaches an eye: a turned head), times the detector's score (occluded
faces score lower). Faces too small to embed score 0.
"""
from __future__ import annotations

import numpy as np

from .align import LEFT_EYE, LEFT_EYE_KP, RIGHT_EYE, RIGHT_EYE_KP

NOSE_KP = 2
CHIP_EYE_PX = float(np.hypot(*(LEFT_EYE - RIGHT_EYE)))  # ~52.5: larger faces are scaled down anyway


def eye_distance(keypoints) -> float:
    kps = np.asarray(keypoints, np.float64)
    return float(np.hypot(*(kps[LEFT_EYE_KP] - kps[RIGHT_EYE_KP])))


def frontality(keypoints) -> float:
    """1 for a frontal face, falling to 0 as the nose tip moves out to an eye (yaw)."""
    kps = np.asarray(keypoints, np.float64)
    axis = kps[LEFT_EYE_KP] - kps[RIGHT_EYE_KP]
    half = np.hypot(*axis) / 2
    if half < 1e-6:
        return 0.0
    mid = (kps[LEFT_EYE_KP] + kps[RIGHT_EYE_KP]) / 2
    offset = abs(float(np.dot(kps[NOSE_KP] - mid, axis / (2 * half)))) / half
    return max(0.0, 1.0 - offset)


def view_quality(keypoints, score: float, min_eye_px: float) -> float:
    eyes = eye_distance(keypoints)
    if eyes < min_eye_px:
        return 0.0
    return min(eyes, CHIP_EYE_PX) * frontality(keypoints) * float(score)
