"""face-api's SSD-MobileNet-v1 face detector rebuilt in PyTorch: checked against face-api's own
JavaScript (TensorFlow.js, pure-JS CPU backend) on a real frame, and its anchor generator
against the anchors the network ships with."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import torch

from common.config import ROOT
from models.dataset import DATA_DIR, read_mot
from models.blazeface.postprocess import preprocess
from models.build import build
from models.facerec.weights import fetch, package_dir
from models.runtime import load_detector
from models.ssd_mobilenet.net import from_manifest
from models.ssd_mobilenet.postprocess import anchors, decode, feature_sizes, hard_nms, to_input_pixels

pytestmark = pytest.mark.usefixtures("data_dir")
JS_DIR = ROOT / "models" / "facerec" / "js"  # face-api's own JavaScript and TensorFlow.js (make js)


@pytest.fixture(scope="module")
def ssd():
    fetch()
    return from_manifest(package_dir() / "model" / "ssd_mobilenetv1_model-weights_manifest.json")


def test_anchor_generator_reproduces_the_shipped_anchors(ssd):
    _, shipped = ssd
    np.testing.assert_allclose(anchors(512), shipped, atol=1e-4)
    cells = [s * s for s in feature_sizes(320)]
    assert len(anchors(320)) == cells[0] * 3 + sum(cells[1:]) * 6


@pytest.mark.parametrize("size", [512, 320])
def test_network_outputs_one_row_per_anchor(ssd, size):
    net, _ = ssd
    with torch.no_grad():
        boxes, logits = net(torch.zeros(1, size, size, 3))
    assert boxes.shape == (1, len(anchors(size)), 4) and logits.shape == (1, len(anchors(size)), 3)


def test_matches_face_apis_javascript_on_a_real_frame(ssd, tmp_path):
    net, shipped = ssd
    path, gt = read_mot(DATA_DIR / "OTB-FaceOcc1-A")[0]
    frame = cv2.imread(str(path))
    rgb = cv2.cvtColor(cv2.resize(frame, (512, 512), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    (tmp_path / "input.rgb").write_bytes(rgb.tobytes())
    node = shutil.which("node")
    assert node, "node is not installed (Node 20 is a set-up requirement)"
    out = subprocess.run([node, str(JS_DIR / "ssd_reference.js"), str(package_dir()), str(tmp_path / "input.rgb")],
                         env=dict(os.environ, NODE_PATH=str(JS_DIR / "node_modules")),
                         capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout)
    assert result["backend"] == "cpu"
    js_boxes, js_scores = (np.asarray(result["outputs"][0][k], np.float32) for k in ("boxes", "scores"))

    x = torch.from_numpy(rgb)[None].float() / 127.5 - 1
    with torch.no_grad():
        encodings, logits = net(x)
    boxes, scores = decode(encodings.numpy(), logits.numpy(), shipped)
    box_diff, score_diff = float(np.abs(boxes - js_boxes).max()), float(np.abs(scores - js_scores).max())
    print(f"SSD PyTorch vs face-api JS: max abs difference boxes {box_diff:.2e}, scores {score_diff:.2e}")
    assert box_diff < 1e-4 and score_diff < 1e-4

    keep = hard_nms(boxes, scores, 0.5)
    found = to_input_pixels(boxes[keep], 512) * np.array([frame.shape[1], frame.shape[0]] * 2) / 512
    centres = (found[:, :2] + found[:, 2:]) / 2
    x1, y1, x2, y2 = gt[0]
    inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
    assert len(keep) == 1 and inside.all(), (found, gt)


def test_tvm_build_matches_onnx_runtime_on_a_real_frame():
    """The same chain as BlazeFace's: TorchScript -> ONNX -> TVM (host llvm), outputs equal to ORT's."""
    build(["ssd-mobilenet"], ["llvm"])
    path, _ = read_mot(DATA_DIR / "OTB-FaceOcc1-A")[0]
    frame = cv2.imread(str(path))
    tvm, ort = (load_detector("ssd-mobilenet", b, num_threads=1) for b in ("tvm", "onnxruntime"))
    x, _ = preprocess(frame, tvm.input_size)
    diffs = [float(np.abs(a - b).max()) for a, b in zip(tvm.infer(x), ort.infer(x))]
    print(f"SSD TVM vs ONNX Runtime: max abs difference encodings {diffs[0]:.2e}, logits {diffs[1]:.2e}")
    assert max(diffs) < 1e-3
    found = tvm.detect(frame)
    assert len(found) == 1 and found.keypoints.shape == (1, 0, 2)  # SSD gives boxes, no landmarks


def test_hard_nms_keeps_the_best_of_an_overlapping_pair():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.6, 0.9, 0.7, 0.3], np.float32)
    assert hard_nms(boxes, scores, 0.5).tolist() == [1, 2]  # 0 overlaps 1 (IoU 0.68); 3 is under the threshold
