"""Cut a face out of a frame the way the descriptor network was trained to see it.

dlib trained its face ResNet on 150x150 "face chips" aligned by a similarity transform with
25% padding (dlib `get_face_chip_details(shape, 150, 0.25)`). Its 5-point template puts the
eye corners at fixed unit positions; the mean of each eye's two corners, mapped through the
padding, gives the eye centres below. BlazeFace gives eye centres, so a two-point similarity
(rotation, uniform scale, shift) from its eyes to these centres reproduces dlib's chips
closely. BlazeFace keypoint 0 is the subject's right eye, which lies on the left of an
unmirrored image; it maps to the left template eye. YuNet's landmarks start the same way
(0 right eye, 1 left eye, 2 nose tip), so its faces are aligned alike.
"""
from __future__ import annotations

import cv2
import numpy as np

from .spec import INPUT_SIZE

_PADDING = 0.25
# dlib's 5-point template (unit square): right eye outer/inner, left eye inner/outer corners.
_RIGHT_EYE_CORNERS = ((0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242))
_LEFT_EYE_CORNERS = ((0.6460604764104, 0.2289674387677), (0.8595674595992, 0.2134981538014))


def _chip_point(corners) -> np.ndarray:
    unit = np.mean(np.asarray(corners, np.float64), axis=0)
    return (unit + _PADDING) / (1 + 2 * _PADDING) * INPUT_SIZE


# Where the eye centres land in the 150x150 crop: about (47.7, 47.1) and (100.3, 47.1).
RIGHT_EYE = _chip_point(_RIGHT_EYE_CORNERS)
LEFT_EYE = _chip_point(_LEFT_EYE_CORNERS)
RIGHT_EYE_KP, LEFT_EYE_KP = 0, 1  # BlazeFace keypoint indices, and YuNet's


def eye_transform(right_eye, left_eye) -> np.ndarray:
    """2x3 similarity matrix taking the two eye points (frame pixels) to the template eyes."""
    src = np.asarray(left_eye, np.float64) - np.asarray(right_eye, np.float64)
    dst = LEFT_EYE - RIGHT_EYE
    src_c = complex(src[0], src[1])
    if abs(src_c) < 1e-6:
        raise ValueError("the two eye points coincide")
    rot = complex(dst[0], dst[1]) / src_c  # scale * e^(i angle)
    a, b = rot.real, rot.imag
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = RIGHT_EYE - m[:, :2] @ np.asarray(right_eye, np.float64)
    return m


def align(frame_bgr: np.ndarray, keypoints) -> np.ndarray:
    """The 150x150 RGB uint8 face chip for a face with BlazeFace (6, 2) or YuNet (5, 2) `keypoints` in frame pixels.

    Large faces are halved with an image pyramid first so the warp does not alias (dlib does
    the same when it extracts chips).
    """
    kps = np.asarray(keypoints, np.float64)
    m = eye_transform(kps[RIGHT_EYE_KP], kps[LEFT_EYE_KP])
    # Only the part of the frame the chip sees is warped (and pyramided).
    inverse = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [INPUT_SIZE, 0, 1], [0, INPUT_SIZE, 1], [INPUT_SIZE, INPUT_SIZE, 1]], np.float64)
    src = corners @ inverse.T
    h, w = frame_bgr.shape[:2]
    x0, y0 = np.clip(np.floor(src.min(0)).astype(int) - 2, 0, [w, h])
    x1, y1 = np.clip(np.ceil(src.max(0)).astype(int) + 2, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    roi = frame_bgr[y0:y1, x0:x1]
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    while scale < 0.5 and min(roi.shape[:2]) >= 4:
        roi = cv2.pyrDown(roi)
        m[:, :2] *= 2.0
        scale *= 2.0
    chip = cv2.warpAffine(roi, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return cv2.cvtColor(chip, cv2.COLOR_BGR2RGB)
