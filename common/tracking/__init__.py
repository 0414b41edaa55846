"""Face tracking shared by the live tracker service and `facetrack eval`.

One job per module: `trackers` (OpenCV correlation trackers by name), `association` (IoU +
Hungarian matching), `interval` (adaptive detector interval), `manager` (TrackManager: track
life, late detections, drift).
"""
from .association import associate, box_iou, iou_matrix
from .manager import FrameDetections, TrackManager, carry_forward
from .trackers import KINDS, create_tracker

__all__ = ["KINDS", "FrameDetections", "TrackManager", "associate", "box_iou", "carry_forward", "create_tracker",
           "iou_matrix"]
