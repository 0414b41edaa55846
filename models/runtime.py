"""Face detector runtime: what the detector service imports.

    det = load_detector("full", backend="tvm")      # models/build/full/llvm.so
    found = det.detect(frame_bgr)                   # Detections in frame pixels

Backends: "tvm" (the compiled host library), "torchscript", "onnxruntime" (the exported
files) and "torch" (eager PyTorch from the .tflite weights), and "auto" (the default of the
service: TVM where `make model` timed it at least as fast as ONNX Runtime on this CPU, else
ONNX Runtime; models/auto.py). Only the chosen backend's library is imported.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cpu import library_mismatch
from .zoo import MODELS, DetectorModel, thresholds

BUILD_DIR = Path(__file__).resolve().parent / "build"
BACKENDS = ("auto", "tvm", "torchscript", "onnxruntime", "torch")
_FILES = {"tvm": "llvm.so", "torchscript": "model.ts", "onnxruntime": "model.onnx"}

RawOutputs = tuple[np.ndarray, ...]  # the model's outputs (zoo: `outputs`), each (1, anchors, width)


class ModelFileError(Exception):
    """A model file is missing, truncated or not the expected model (message: one line)."""


@dataclass
class Detections:
    boxes: np.ndarray      # (N, 4) float32, x1 y1 x2 y2 in frame pixels
    scores: np.ndarray     # (N,) float32 in [0, 1]
    # (N, K, 2) float32 x y in frame pixels; BlazeFace K=6: eyes (R, L), nose, mouth, ears (R, L);
    # YuNet K=5: eyes (R, L), nose, mouth corners (R, L); K=0 from a remote detector without landmarks
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class FaceDetector:
    """The model's preprocessing -> network -> its decoding and NMS -> boxes in the frame's own pixels."""

    def __init__(self, model: DetectorModel, backend: str, infer: Callable[[np.ndarray], RawOutputs],
                 score_threshold: float, nms_iou: float, model_path: Path | None):
        self.model = model
        self.variant, self.backend, self.model_path = model.name, backend, model_path
        self.input_size: tuple[int, int] = model.input_size
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.infer = infer  # the model's NHWC input (zoo: `preprocess`) -> raw outputs

    def at(self, input_size: tuple[int, int]) -> FaceDetector:
        """The same network for frames fitted into `input_size`: eager PyTorch only (a built model has one size)."""
        if self.backend != "torch" and self.model.at(input_size) is not self.model:
            raise ValueError(f"the {self.backend} build of {self.variant} has one input size; use the torch backend")
        return FaceDetector(self.model.at(input_size), self.backend, self.infer, self.score_threshold, self.nms_iou,
                            self.model_path)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame_bgr.shape} {frame_bgr.dtype}")
        x, placement = self.model.preprocess(frame_bgr)
        boxes, scores, kps = self.model.detections(self.infer(x), self.score_threshold, self.nms_iou)
        boxes, kps = self.model.to_frame(boxes, kps, placement, frame_bgr.shape)
        return Detections(boxes, scores, kps)


def load_detector(variant: str = "full", backend: str = "tvm", model_dir: Path | None = None,
                  score_threshold: float | None = None, nms_iou: float | None = None, num_threads: int | None = None,
                  input_size: tuple[int, int] | None = None) -> FaceDetector:
    """Load a built model (see `facetrack build-model`); raise ModelFileError if it is unusable.

    `input_size` (width, height) sizes a model that takes any (YuNet); None: the model's own;
    `score_threshold` and `nms_iou` likewise (None: the model's own, models/zoo.py).
    """
    if variant not in MODELS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(MODELS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    model = MODELS[variant].at(input_size)
    if backend == "auto":
        from .auto import resolve

        backend = resolve(backend, Path(model_dir or BUILD_DIR) / variant, f"detector {variant}")
    path = None
    if backend in _FILES:
        path = Path(model_dir or BUILD_DIR) / variant / _FILES[backend]
        if not path.is_file():
            raise ModelFileError(f"model file {path} is missing: run `facetrack build-model --variant {variant}`")
    infer = _LOADERS[backend](model, path, num_threads)
    _check_outputs(infer, model, path or backend)
    return FaceDetector(model, backend, infer, *thresholds(variant, score_threshold, nms_iou), path)


def _model(variant: str | DetectorModel) -> DetectorModel:
    return MODELS[variant] if isinstance(variant, str) else variant


def _reason(e: BaseException) -> str:
    """One line out of a (possibly multi-line, traceback-laden) library error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _check_outputs(infer, model: DetectorModel, path) -> None:
    """Run once on a blank input: catches a file that loads but is another model (or another size of it)."""
    size = "x".join(map(str, model.input_size))
    hint = (f" (built for another input size? `facetrack build-model --variant {model.name} --input-size {size}`)"
            if model.resizable else "")
    try:
        outputs = infer(np.zeros(model.input_shape, np.float32))
    except Exception as e:  # noqa: BLE001 - any failure here means the file is not this model
        raise ModelFileError(f"model file {path} does not run as the {model.name} model at {size}: "
                             f"{_reason(e)}{hint}") from None
    expected = tuple((1, model.anchors, width) for width in model.output_widths)
    if tuple(o.shape for o in outputs) != expected:
        got = " ".join(str(o.shape) for o in outputs)
        raise ModelFileError(f"model file {path} is not the {model.name} model at {size}: outputs {got}, "
                             f"expected {' '.join(map(str, expected))}{hint}")


def set_tvm_threads(num_threads: int | None) -> None:
    """Size TVM's CPU thread pool.

    None keeps TVM's default, which on x86 assumes hyper-threading and takes half the
    logical CPUs (1 on a 2-core VM). TVM reads TVM_NUM_THREADS when it sizes the pool,
    and config_threadpool re-sizes a pool that already exists.
    """
    import os

    import tvm

    if num_threads:
        os.environ["TVM_NUM_THREADS"] = str(int(num_threads))
        tvm.get_global_func("runtime.config_threadpool")(0, int(num_threads))


def check_elf_complete(path: Path) -> None:
    """Raise ModelFileError unless every segment and the section table lie inside the file.

    dlopen() of a truncated shared library maps pages past the end of the file and the
    process dies of SIGBUS on first touch: a truncated build must be caught before that.
    """
    data = path.read_bytes()
    size = len(data)
    if size < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ModelFileError(f"model file {path} is truncated or not a TVM library: not a 64-bit ELF file")
    u = lambda off, n: int.from_bytes(data[off:off + n], "little")  # noqa: E731
    phoff, shoff, phentsize, phnum, shentsize, shnum = u(32, 8), u(40, 8), u(54, 2), u(56, 2), u(58, 2), u(60, 2)
    ends = [phoff + phentsize * phnum, shoff + shentsize * shnum]
    if ends[0] <= size:
        ends += [u(ph + 8, 8) + u(ph + 32, 8) for ph in range(phoff, phoff + phentsize * phnum, phentsize)]
    if max(ends) > size:
        raise ModelFileError(f"model file {path} is truncated: {size} bytes, its ELF headers need {max(ends)}")


def tvm_runtime_only() -> None:
    """Make this process's `import tvm` load only what running a compiled model needs.

    Call before anything imports tvm. TVM_USE_RUNTIME_LIB=1 loads libtvm_runtime.so
    instead of the compiler library (~110 MB less), and tvm_ffi imports torch whenever it
    is importable (~200 MB): a process that only runs the library blocks it. Together the
    detector holds ~100 MB instead of ~450 MB (models/README.md). Not for processes that
    build or tune, nor for the torch backends.
    """
    import os
    import sys

    if "tvm" in sys.modules or sys.modules.get("torch") is not None:
        raise RuntimeError("tvm_runtime_only() must run before tvm or torch is imported")
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"
    # `import torch` now raises ImportError, which tvm_ffi allows (typeshed's sys.modules omits None)
    sys.modules["torch"] = None  # type: ignore[assignment]


def _load_tvm(variant: str | DetectorModel, path: Path, num_threads: int | None):
    import tvm
    from tvm.runtime.vm import VirtualMachine  # runtime only: no compiler passes imported

    check_elf_complete(path)
    mismatch = library_mismatch(path)
    if mismatch:  # it would die of SIGILL on its first kernel
        raise ModelFileError(mismatch)
    try:
        vm = VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
        main = vm["main"]
    except Exception as e:  # noqa: BLE001 - TVM raises several error types for a bad file
        raise ModelFileError(f"model file {path} is truncated or not a TVM library: {_reason(e)}") from None
    set_tvm_threads(num_threads)
    x_tvm = tvm.runtime.empty(_model(variant).input_shape, "float32", tvm.cpu())  # one input tensor, reused

    def infer(x: np.ndarray) -> RawOutputs:
        x_tvm.copyfrom(np.ascontiguousarray(x, np.float32))
        out = main(x_tvm)
        return (out.numpy(),) if isinstance(out, tvm.runtime.Tensor) else tuple(o.numpy() for o in out)

    return infer


def _torch_infer(module, num_threads: int | None):
    import torch

    if num_threads:
        torch.set_num_threads(int(num_threads))

    def infer(x: np.ndarray) -> RawOutputs:
        with torch.inference_mode():
            out = module(torch.from_numpy(x))
        return tuple(o.numpy() for o in out) if isinstance(out, (tuple, list)) else (out.numpy(),)

    return infer


def _load_torchscript(variant: str | DetectorModel, path: Path, num_threads: int | None):
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"model file {path} is truncated or not a TorchScript archive: {_reason(e)}") from None
    return _torch_infer(module, num_threads)


def _load_torch(variant: str | DetectorModel, path: None, num_threads: int | None):
    return _torch_infer(_model(variant).network(), num_threads)


def _load_onnxruntime(variant: str | DetectorModel, path: Path, num_threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(num_threads), 1
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"model file {path} is truncated or not an ONNX model: {_reason(e)}") from None

    names = list(_model(variant).outputs)

    def infer(x: np.ndarray) -> RawOutputs:
        return tuple(session.run(names, {"input": x}))

    return infer


# (variant, model file or None, threads) -> the infer function
_LOADERS: dict[str, Callable[..., Callable[[np.ndarray], RawOutputs]]] = {"tvm": _load_tvm, "torchscript": _load_torchscript, "onnxruntime": _load_onnxruntime,
            "torch": _load_torch}
