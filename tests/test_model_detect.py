"""Post-processing on real frames: faces found where the ground truth says, in frame pixels."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.accuracy import agreement, run
from models.blazeface.postprocess import ANCHOR_OPTIONS, ssd_anchors, weighted_nms
from models.build import build
from models.dataset import DATA_DIR, datasets, read_mot
from models.runtime import Detections, load_detector
from models.weights import fetch


@pytest.fixture(scope="module")
def detectors():
    fetch()
    build(["full"], ["torchscript", "onnx", "llvm"])
    return {b: load_detector("full", b, num_threads=1) for b in ("tvm", "torchscript")}


def test_anchor_counts_match_the_networks():
    assert len(ssd_anchors(**ANCHOR_OPTIONS["short"])) == 896    # 16x16x2 + 8x8x6
    assert len(ssd_anchors(**ANCHOR_OPTIONS["full"])) == 2304    # 48x48x1


def test_weighted_nms_blends_overlaps_and_keeps_the_rest():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    b, s, k = weighted_nms(boxes, scores, kps, 0.3)
    assert len(b) == 2 and s.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(b[0], (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(b[1], boxes[2])
    np.testing.assert_allclose(k[0, 0], b[0, :2], rtol=1e-6)


@pytest.mark.parametrize("seq,frame", [("OTB-FaceOcc1-A", 1), ("OTB-FaceOcc1-A", 150), ("OTB-FaceOcc1-B", 1),
                                       ("OTB-Girl-A", 1)])
def test_face_found_inside_the_gt_head_box(detectors, seq, frame):
    path, gt = read_mot(DATA_DIR / seq)[frame - 1]
    found = detectors["tvm"].detect(cv2.imread(str(path)))
    x1, y1, x2, y2 = gt[0]
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
    assert inside.any(), f"{path}: {found.boxes} vs gt {gt[0]}"
    eyes = found.keypoints[inside][0, :2]
    assert np.all((eyes >= gt[0, :2]) & (eyes <= gt[0, 2:])), "eye keypoints should fall in the head box"
    assert found.boxes.dtype == np.float32 and found.keypoints.shape[1:] == (6, 2)


def test_boxes_are_in_original_frame_pixels(detectors):
    """A frame pasted into a larger canvas at an offset gives the same face, offset."""
    path, _ = read_mot(DATA_DIR / "OTB-FaceOcc1-A")[0]
    img = cv2.imread(str(path))
    canvas = np.zeros((img.shape[0] + 200, img.shape[1] + 40, 3), np.uint8)
    canvas[150:150 + img.shape[0], 30:30 + img.shape[1]] = img
    a, b = detectors["tvm"].detect(img), detectors["tvm"].detect(canvas)
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(b.boxes[0] - [30, 150, 30, 150], a.boxes[0], atol=4)


def test_tvm_and_torchscript_detections_agree(detectors):
    samples = [s for seq in datasets().values() for s in seq[::60]]
    found = {name: run(d, samples) for name, d in detectors.items()}
    diff = agreement(found["tvm"], found["torchscript"])
    print("tvm vs torchscript:", diff)
    assert sum(len(d) for d in found["tvm"]) > len(samples) // 2
    assert diff["count_mismatch_frames"] == 0
    assert diff["max_box_diff_px"] < 0.05 and diff["max_score_diff"] < 1e-4


def test_empty_frame_gives_no_detection(detectors):
    found = detectors["tvm"].detect(np.zeros((480, 640, 3), np.uint8))
    assert isinstance(found, Detections) and len(found) == 0
    assert found.boxes.shape == (0, 4) and found.keypoints.shape == (0, 6, 2)
