"""The PyTorch BlazeFace reproduces the .tflite, and every export reproduces PyTorch."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from models.blazeface import INPUT_SIZE, from_tflite
from models.blazeface.postprocess import preprocess
from models.blazeface.tflite import run_litert
from models.build import build
from models.dataset import DATA_DIR
from models.runtime import _load_onnxruntime, _load_torchscript, _load_tvm
from models.weights import fetch, tflite_path

FRAMES = ["OTB-FaceOcc1-A/img1/000001.jpg", "OTB-FaceOcc1-B/img1/000150.jpg", "OTB-Girl-A/img1/000050.jpg",
          "widerface-sample/images/2--Demonstration/2_Demonstration_Demonstration_Or_Protest_2_58.jpg"]
TOL = 1e-3  # float32 summation order differs between runtimes; measured ~1e-4


def real_inputs(size: int) -> list[np.ndarray]:
    paths = [DATA_DIR / f for f in FRAMES]
    paths = [p for p in paths if p.is_file()] or sorted(DATA_DIR.glob("*/img1/000001.jpg"))
    assert paths, f"no test frames under {DATA_DIR}"
    return [preprocess(cv2.imread(str(p)), size)[0] for p in paths]


@pytest.fixture(scope="module")
def built():
    fetch()
    return build(["full"], ["torchscript", "onnx", "llvm"])


@pytest.mark.parametrize("variant", ["short", "full"])
def test_pytorch_matches_tflite(variant):
    fetch()
    model = from_tflite(variant, tflite_path(variant))
    worst = [0.0, 0.0]
    for x in real_inputs(INPUT_SIZE[variant]):
        ref_reg, ref_cls = run_litert(tflite_path(variant), x)
        with torch.inference_mode():
            reg, cls = model(torch.from_numpy(x))
        worst = [max(worst[0], float(np.abs(reg.numpy() - ref_reg).max())),
                 max(worst[1], float(np.abs(cls.numpy() - ref_cls).max()))]
        assert ref_cls.max() > 0, "a face frame should give a confident anchor"
    print(f"{variant}: max abs diff vs LiteRT: regressors {worst[0]:.2e}, classificators {worst[1]:.2e}")
    assert worst[0] < TOL and worst[1] < TOL


def test_exports_match_pytorch(built):
    size = INPUT_SIZE["full"]
    eager = from_tflite("full", tflite_path("full"))
    runners = {"torchscript": _load_torchscript("full", built["full", "torchscript"], 1),
               "onnxruntime": _load_onnxruntime("full", built["full", "onnx"], 1),
               "tvm": _load_tvm("full", built["full", "llvm"], 1)}
    for x in real_inputs(size):
        with torch.inference_mode():
            ref = [t.numpy() for t in eager(torch.from_numpy(x))]
        outs = {name: run(x) for name, run in runners.items()}
        for name, out in outs.items():
            for got, want in zip(out, ref):
                assert np.abs(got - want).max() < TOL, name
        onnx_vs_tvm = max(float(np.abs(a - b).max()) for a, b in zip(outs["onnxruntime"], outs["tvm"]))
        print(f"onnxruntime vs tvm: max abs diff {onnx_vs_tvm:.2e}")
        assert onnx_vs_tvm < TOL
