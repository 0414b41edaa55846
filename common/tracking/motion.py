"""Constant-velocity Kalman filter of a box (centre x, y, width, height), one per track.

Between detections it predicts where a face went (a missed detection, a face behind
another, a frozen correlation tracker), so matching and the published box follow the motion
instead of a box left where the face was. The four coordinates are independent 2-state
filters (position, velocity per frame; sizes do not move, see MOVING); noise scales with the box's size, so a 30 px face and
a 150 px one are filtered alike (SORT and ByteTrack do the same with their size-scaled noise).
"""
from __future__ import annotations

import numpy as np

POSITION_NOISE = 0.05   # measurement noise, std in box sizes (a detector's jitter)
VELOCITY_NOISE = 0.02   # process noise, std of the velocity change per frame in box sizes
# Only the centre has a velocity: the size follows the detections (a size velocity learnt from
# the detector's jitter made carried-forward boxes swell and shrink; -1 to -3 HOTA on OTB).
MOVING = np.array([1.0, 1.0, 0.0, 0.0])


class ConstantVelocity:
    """x = (cx, cy, w, h) with velocities; `predict` one frame at a time, `update` with a box."""

    __slots__ = ("x", "v", "p", "age")

    def __init__(self, box: np.ndarray):
        self.x = _centre_size(box)
        self.v = np.zeros(4)
        size = self._size()
        # per coordinate: covariance [[pp, pv], [pv, vv]]
        self.p = np.tile(np.array([(POSITION_NOISE * size) ** 2, 0.0, (4 * VELOCITY_NOISE * size) ** 2]), (4, 1))
        self.age = 0

    def _size(self) -> float:
        return float(max(np.sqrt(max(self.x[2] * self.x[3], 1.0)), 1.0))

    def predict(self) -> np.ndarray:
        """Advance one frame; returns the predicted xyxy box."""
        self.x = self.x + self.v
        self.x[2:] = np.maximum(self.x[2:], 1.0)
        q = (VELOCITY_NOISE * self._size()) ** 2
        pp, pv, vv = self.p.T
        self.p = np.stack([pp + 2 * pv + vv, pv + vv, vv + q], axis=1)
        self.age += 1
        return self.box()

    def update(self, box: np.ndarray) -> None:
        """Correct with a measured xyxy box (a detection carried to this frame)."""
        z = _centre_size(box)
        r = (POSITION_NOISE * self._size()) ** 2
        pp, pv, vv = self.p.T
        s = pp + r
        k_pos, k_vel = pp / s, pv / s
        innovation = z - self.x
        self.x = self.x + k_pos * innovation
        self.v = self.v + k_vel * innovation * MOVING
        self.p = np.stack([(1 - k_pos) * pp, (1 - k_pos) * pv, vv - k_vel * pv], axis=1)
        self.age = 0

    def speed(self) -> float:
        """Centre speed in box sizes per frame."""
        return float(np.hypot(self.v[0], self.v[1]) / self._size())

    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x
        return np.array((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def _centre_size(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64).tolist()
    return np.array(((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)))
