"""`backend: auto`: the compiled TVM model where it is at least as fast as ONNX Runtime here, else ONNX Runtime.

A TVM build is only fast with a tuning database for its CPU: untuned, or on a CPU whose
database is missing or stale, it runs ~10x slower than ONNX Runtime. So `make model`
(`facetrack build-model`, `facetrack build-identity`) times both on this host, one run of
each in turn on the same input and threads, and records the p50s and the choice in
backend.json beside the build manifest. At start a service reads it (no LLVM, no timing):
TVM only when the recorded library is the one built (its manifest key), on this CPU, and no
slower; anything else (no timing, a rebuilt library, another CPU, code this CPU cannot run)
picks ONNX Runtime. One log line says which, why, and how to make TVM win.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("facetrack.models.auto")

CHOICE = "backend.json"
HOW_TO_TUNE = "facetrack tune-model --minutes 120"
MAX_RUNS, MIN_RUNS, MAX_SECONDS = 300, 5, 10.0


def time_detector(variant: str, build_dir: Path, input_size: tuple[int, int] | None = None, threads: int = 1) -> dict:
    """Time the built TVM library of detector `variant` (at `input_size`, for a model that takes
    any) against ONNX Runtime here; record the choice."""
    from .runtime import _load_onnxruntime, _load_tvm
    from .zoo import MODELS

    model, model_dir = MODELS[variant].at(input_size), build_dir / variant
    x = np.random.default_rng(0).uniform(-1, 1, model.input_shape).astype(np.float32)
    p50, runs = time_backends({"tvm": _load_tvm(model, model_dir / "llvm.so", threads),
                               "onnxruntime": _load_onnxruntime(model, model_dir / "model.onnx", threads)}, x)
    return record(model_dir, p50["tvm"], p50["onnxruntime"], runs, threads)


def time_identity(build_dir: Path, threads: int = 1) -> dict:
    """The same for the face descriptor (models/facerec)."""
    from .facerec.build import NAME
    from .facerec.runtime import _onnxruntime, _tvm
    from .facerec.spec import INPUT_SIZE

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    p50, runs = time_backends({"tvm": _tvm(build_dir, threads), "onnxruntime": _onnxruntime(build_dir, threads)}, x)
    return record(build_dir / NAME, p50["tvm"], p50["onnxruntime"], runs, threads)


def time_backends(infers: dict[str, Callable[[np.ndarray], object]], x: np.ndarray, max_runs: int = MAX_RUNS,
                  min_runs: int = MIN_RUNS, max_seconds: float = MAX_SECONDS) -> tuple[dict[str, float], int]:
    """(p50 milliseconds of each infer(x), runs of each): one run of each in turn (load hits all alike),
    `max_runs`, or fewer once `max_seconds` have passed (an untuned build is slow)."""
    for infer in infers.values():
        for _ in range(3):
            infer(x)
    times: dict[str, list[float]] = {name: [] for name in infers}
    t_end = time.perf_counter() + max_seconds
    for i in range(max_runs):
        if i >= min_runs and time.perf_counter() > t_end:
            break
        for name, infer in infers.items():
            t0 = time.perf_counter()
            infer(x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}, len(next(iter(times.values())))


def record(model_dir: Path, tvm_ms: float, ort_ms: float, runs: int, threads: int) -> dict:
    """Write backend.json for the TVM library now in `model_dir` (its manifest key) and this CPU."""
    from .build import read_manifest, write_manifest
    from .cpu import cpuinfo

    manifest = read_manifest(model_dir / "manifest.json")
    choice = {"backend": "tvm" if tvm_ms <= ort_ms else "onnxruntime", "tvm_p50_ms": round(tvm_ms, 3),
              "onnxruntime_p50_ms": round(ort_ms, 3), "runs": runs, "threads": threads,
              "cpu": _cpu_id(cpuinfo()), "llvm_key": manifest.get("llvm", {}).get("key")}
    write_manifest(model_dir / CHOICE, choice)
    log.info("%s: TVM p50 %.2f ms, ONNX Runtime %.2f ms on this CPU: auto uses %s", model_dir.name, tvm_ms,
             ort_ms, choice["backend"])
    return choice


def choose(model_dir: Path) -> tuple[str, str]:
    """("tvm" | "onnxruntime", the reason in words) for the model built in `model_dir`."""
    from .cpu import cpuinfo, library_mismatch

    try:
        choice = json.loads((model_dir / CHOICE).read_text())
        manifest = json.loads((model_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return "onnxruntime", "the TVM build was never timed on this host (`make model` times it)"
    if choice.get("llvm_key") != manifest.get("llvm", {}).get("key"):
        return "onnxruntime", "the TVM library changed since it was timed (`make model` times it again)"
    if choice.get("cpu") != _cpu_id(cpuinfo()):
        return "onnxruntime", f"the TVM build was timed on another CPU ({choice.get('cpu')}; `make model` here)"
    mismatch = library_mismatch(model_dir / "llvm.so")
    if mismatch:
        return "onnxruntime", mismatch
    tvm_ms, ort_ms = choice["tvm_p50_ms"], choice["onnxruntime_p50_ms"]
    if choice["backend"] == "tvm":
        return "tvm", f"TVM p50 {tvm_ms:.2f} ms <= ONNX Runtime {ort_ms:.2f} ms on this CPU"
    return "onnxruntime", (f"TVM p50 {tvm_ms:.2f} ms > ONNX Runtime {ort_ms:.2f} ms on this CPU; "
                           f"to make TVM faster: `{HOW_TO_TUNE}`")


def resolve(backend: str, model_dir: Path, what: str, logger: logging.Logger = log) -> str:
    """`backend`, or for "auto" the choice for `model_dir`, logged in one line naming `what`."""
    if backend != "auto":
        return backend
    chosen, why = choose(model_dir)
    logger.info("%s backend auto: %s (%s)", what, chosen, why)
    return chosen


def _cpu_id(info: dict) -> str:
    return f"{info['model_name']} [{' '.join(info['isa'])}]"
