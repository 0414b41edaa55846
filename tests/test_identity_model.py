"""The rebuilt descriptor network against face-api's own code, and its compiled forms against it.

Reference: face-api's FaceRecognitionNet (its dist/ build from the pinned tarball) on
TensorFlow.js's pure-JS CPU backend in Node, weights loaded from disk by its own loader.
Inputs: real face crops (OTB and WIDER gt boxes resized to 150x150; alignment does not
matter for comparing two implementations of one network).
"""
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
from models.facerec import align as align_mod
from models.facerec.build import build
from models.facerec.net import from_manifest
from models.facerec.runtime import load_embedder
from models.facerec.weights import manifest_path, package_dir

from identity_probes import DATA, otb_gt, wider_faces

JS_DIR = ROOT / "models" / "facerec" / "js"
MAX_ABS_DIFF = 1e-4  # descriptors are ~0.1-0.5 in magnitude; float32 rounding gives ~1e-7


def _crop(image, box):
    x0, y0, x1, y1 = np.round(box).astype(int)
    h, w = image.shape[:2]
    face = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    return cv2.cvtColor(cv2.resize(face, (150, 150), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    out = []
    for seq, frame in (("OTB-FaceOcc1-A", 1), ("OTB-FaceOcc1-B", 200), ("OTB-Girl-A", 60)):
        out.append(_crop(cv2.imread(str(DATA / seq / "img1" / f"{frame:06d}.jpg")), otb_gt(seq)[frame]))
    wider = [(path, box) for path, boxes in wider_faces(40).items() for box in boxes][:3]
    out += [_crop(cv2.imread(path), box) for path, box in wider]
    return np.stack(out)


@pytest.fixture(scope="module")
def eager(crops) -> np.ndarray:
    with torch.inference_mode():
        return from_manifest(manifest_path())(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()


def test_pytorch_matches_face_api_running_in_tfjs(crops, eager, tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed (Node 20 is a set-up requirement)"
    assert (JS_DIR / "node_modules" / "@tensorflow" / "tfjs").is_dir(), \
        f"run `npm ci --ignore-scripts --prefix {JS_DIR}` (set-up step)"
    crops_file = tmp_path / "crops.rgb"
    crops.tofile(crops_file)
    out = subprocess.run([node, str(JS_DIR / "reference.js"), str(package_dir()), str(crops_file)],
                         env=dict(os.environ, NODE_PATH=str(JS_DIR / "node_modules")),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["backend"] == "cpu"
    reference = np.asarray(result["descriptors"], np.float32)
    diff = float(np.abs(reference - eager).max())
    print(f"face-api (tfjs {result['tfjs']}, cpu) vs PyTorch on {len(crops)} real crops: max abs diff {diff:.2e}")
    assert reference.shape == eager.shape == (len(crops), 128)
    assert diff < MAX_ABS_DIFF


@pytest.mark.parametrize("backend", ["tvm", "onnxruntime", "torchscript"])
def test_compiled_models_match_pytorch(backend, crops, eager):
    build(["torchscript", "onnx", "llvm"])  # cached: instant when up to date
    out = load_embedder(backend).embed(crops)
    diff = float(np.abs(out - eager).max())
    print(f"{backend} vs PyTorch: max abs diff {diff:.2e}")
    assert diff < MAX_ABS_DIFF


def test_alignment_puts_the_eyes_on_the_template():
    """A face tilted 30 degrees at another scale: its eyes land on the template's eye points."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    right, left = np.array([150.0, 120.0]), np.array([150 + 80 * np.cos(0.5), 120 + 80 * np.sin(0.5)])
    for eye in (right, left):  # a bright dot on each eye
        cv2.circle(image, tuple(int(round(v)) for v in eye), 6, (255, 255, 255), -1)
    kps = np.array([right, left, [0, 0], [0, 0], [0, 0], [0, 0]])
    chip = align_mod.align(image, kps)
    m = align_mod.eye_transform(right, left)
    assert np.allclose(m @ [*right, 1], align_mod.RIGHT_EYE) and np.allclose(m @ [*left, 1], align_mod.LEFT_EYE)
    for eye in (align_mod.RIGHT_EYE, align_mod.LEFT_EYE):
        x, y = np.round(eye).astype(int)
        assert chip[y, x].min() > 200  # the dot is there in the chip
