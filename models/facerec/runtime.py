"""Run the face descriptor net on aligned 150x150 RGB chips, on one of four backends.

`load_embedder(backend, ...)` returns an `Embedder` whose `embed(chips)` maps (N, 150, 150, 3)
uint8 RGB chips (models/facerec/align.py) to (N, 128) float32 descriptors. The compiled
backends take one chip per call (their input shape is fixed at batch 1). A missing or
unreadable artefact raises EmbedderError naming the set-up command.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.build import BUILD_DIR
from models.cpu import library_mismatch

from .build import artefact_path
from .spec import DESCRIPTOR_SIZE, INPUT_SIZE

log = logging.getLogger("facetrack.models.facerec.runtime")

BACKENDS = ("auto", "tvm", "torchscript", "onnxruntime", "torch")  # auto: models/auto.py


class EmbedderError(RuntimeError):
    """The descriptor model cannot be loaded; worded as one line."""


def to_input(chip: np.ndarray) -> np.ndarray:
    """(150, 150, 3) uint8 RGB -> (1, 3, 150, 150) float32 in 0..255, what the network takes."""
    if chip.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"expected a {INPUT_SIZE}x{INPUT_SIZE}x3 chip, got {chip.shape}")
    return np.ascontiguousarray(chip.transpose(2, 0, 1)[None], dtype=np.float32)


class Embedder:
    """One loaded backend; `run_one` maps one (1, 3, 150, 150) input to a (1, 128) array."""

    def __init__(self, backend: str, run_one):
        self.backend = backend
        self.run_one = run_one

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        out = np.empty((len(chips), DESCRIPTOR_SIZE), np.float32)
        for i, chip in enumerate(chips):
            out[i] = self.run_one(to_input(chip)).reshape(-1)
        return out


def _artefact(artefact: str, build_dir: Path) -> Path:
    path = artefact_path(artefact, build_dir)
    if not path.is_file():
        raise EmbedderError(f"{path} is missing: run `facetrack build-identity` (set-up step)")
    return path


def _torch(build_dir: Path, threads: int):
    import torch

    from .net import from_manifest
    from .weights import WeightsError, manifest_path

    torch.set_num_threads(threads)
    try:
        net = from_manifest(manifest_path())
    except WeightsError as e:
        raise EmbedderError(str(e)) from None

    def run(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()
    return run


def _torchscript(build_dir: Path, threads: int):
    import torch

    torch.set_num_threads(threads)
    path = _artefact("torchscript", build_dir)
    try:
        net = torch.jit.load(str(path)).eval()
    except RuntimeError as e:
        raise EmbedderError(f"{path}: cannot load ({str(e).splitlines()[0]}); "
                            "rebuild with `facetrack build-identity --force`") from None

    def run(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()
    return run


def _onnxruntime(build_dir: Path, threads: int):
    import onnxruntime as ort

    path = _artefact("onnx", build_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated types
        raise EmbedderError(f"{path}: cannot load ({str(e).splitlines()[0]})") from None
    return lambda x: session.run(None, {"input": x})[0]


def _tvm(build_dir: Path, threads: int):
    import tvm
    from tvm import relax

    path = _artefact("llvm", build_dir)
    mismatch = library_mismatch(path)
    if mismatch:  # it would die of SIGILL on its first kernel
        raise EmbedderError(mismatch)
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    try:
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    except Exception as e:  # noqa: BLE001 - TVM raises its own error types
        raise EmbedderError(f"{path}: cannot load ({str(e).strip().splitlines()[-1][:200]}); "
                            "rebuild with `facetrack build-identity --force`") from None
    main = vm["main"]
    return lambda x: main(tvm.runtime.tensor(x)).numpy()


def load_embedder(backend: str = "auto", build_dir: Path = BUILD_DIR, threads: int = 1) -> Embedder:
    if backend not in BACKENDS:
        raise EmbedderError(f"unknown descriptor backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        from models.auto import resolve

        backend = resolve(backend, artefact_path("llvm", Path(build_dir)).parent, "face descriptor")
    make = {"tvm": _tvm, "torchscript": _torchscript, "onnxruntime": _onnxruntime, "torch": _torch}[backend]
    embedder = Embedder(backend, make(Path(build_dir), threads))
    log.info("face descriptor model loaded: %s, %d thread(s)", backend, threads)
    return embedder
