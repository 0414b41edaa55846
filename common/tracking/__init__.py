"""Face tracking shared by the live tracker service and `facetrack eval`.

One job per module: `trackers` (OpenCV correlation trackers by name), `association` (IoU +
Hungarian matching), `motion` (constant-velocity Kalman filter per track), `schedule`
(detect or track, by measured cost), `interval` (adaptive detector interval), `manager`
(TrackManager: two-stage association, track life, late detections, bridging, drift).
"""
from .association import associate, box_iou, iou_matrix
from .manager import FrameDetections, TrackManager, carry_forward
from .schedule import BOARD_CORES, StepClock
from .trackers import KINDS, create_tracker

__all__ = ["BOARD_CORES", "KINDS", "FrameDetections", "StepClock", "TrackManager", "associate", "box_iou",
           "carry_forward", "create_tracker", "iou_matrix"]
