"""`facetrack bench detector`: latency of every backend on the same real face frame.

Prints ONE JSON object on stdout (progress goes to stderr). Backends run round-robin, one
inference each per round in a fresh random order, so load from other processes hits all of
them alike; every backend gets the same thread count. Times cover the network only
(the same preprocessed NHWC input for all, as the .tflite takes it), not pre/post-processing,
which all backends share.
The reference is the model's own runtime: for BlazeFace MediaPipe's (`litert_xnnpack`: the
original .tflite on LiteRT with XNNPACK), for YuNet OpenCV's (`opencv_dnn`: the same network
exported as `cv2.FaceDetectorYN` loads it, run by cv2.dnn; its input is made NCHW inside the
timed call, as FaceDetectorYN's blobFromImage does). Every row gives its p50 over the
reference's and its speed-up over eager PyTorch, and the report names the CPU it ran on (a
ratio from another CPU does not carry over).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

from common.report import provenance
from common.report import table as md_table

from .build import BUILD_DIR, Builder, tuning_db_path
from .cpu import describe
from .dataset import DATA_DIR
from .images import read_image
from .runtime import _load_onnxruntime, _load_torch, _load_torchscript, _load_tvm, _torch_infer
from .zoo import MODELS

log = logging.getLogger("facetrack.models.bench")
VARIANTS = ("short", "full", "yunet")
REFERENCE = {"short": "litert_xnnpack", "full": "litert_xnnpack", "yunet": "opencv_dnn"}
MODEL_NAME = {"short": "blazeface_short", "full": "blazeface_full", "yunet": "yunet_s"}

DEFAULT_FRAME = "OTB-FaceOcc1-A/img1/000001.jpg"


def calibration_frames(data_dir: Path, every: int = 60) -> list[Path]:
    """Real frames for int8 calibration: every `every`-th frame of each clip, some WIDER images."""
    frames = sorted(data_dir.glob("OTB-*/img1/*.jpg"))[::every]
    return frames + sorted(data_dir.glob("widerface-sample/images/*/*.jpg"))[::10]


def torchscript_int8(variant: str, calib: list[np.ndarray]):
    """Post-training static int8 quantisation (FX graph mode, x86/fbgemm kernels), traced.

    Convs, adds and ReLUs run as quantized::conv2d / add_relu on uint8 activations and
    per-channel int8 weights; pads, reshapes and the outputs stay float.
    """
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from .blazeface import from_tflite
    from .weights import tflite_path

    engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack"
    torch.backends.quantized.engine = engine
    model = from_tflite(variant, tflite_path(variant))
    example = torch.from_numpy(calib[0])
    prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example_inputs=(example,))
    with torch.inference_mode():
        for x in calib:
            prepared(torch.from_numpy(x))
    quantized = convert_fx(prepared)
    with torch.inference_mode():
        return torch.jit.freeze(torch.jit.trace(quantized, example).eval())


def opencv_dnn_infer(path: Path, output_names, threads: int):
    """cv2.dnn on the OpenCV export: NHWC input made NCHW, as FaceDetectorYN's blobFromImage does."""
    import cv2

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNet(str(path))
    names = list(output_names)

    def infer(x: np.ndarray):
        net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        return tuple(net.forward(names))

    return infer


def load_backends(variant: str, threads: int, calib: list[np.ndarray], build_dir: Path) -> dict:
    """name -> infer(x) for every benchmarked backend (building what is missing)."""
    builder = Builder(variant, build_dir)
    for artefact in ("torchscript", "onnx", "llvm", "llvm-untuned"):
        builder.ensure(artefact)
    if tuning_db_path(variant, builder.target_for("llvm")) is None:
        log.warning("no tuning database for %s: tvm_tuned is the fused build without tuned schedules", variant)
    backends = {
        "pytorch_eager": _load_torch(variant, None, threads),
        "torchscript": _load_torchscript(variant, builder.path("torchscript"), threads),
        "onnxruntime": _load_onnxruntime(variant, builder.path("onnx"), threads),
        "tvm_untuned": _load_tvm(variant, builder.path("llvm-untuned"), threads),
        "tvm_tuned": _load_tvm(variant, builder.path("llvm"), threads),
    }
    if variant == "yunet":
        _, names = builder.model.opencv_network()
        backends["opencv_dnn"] = opencv_dnn_infer(builder.ensure("onnx-opencv"), names, threads)
    else:
        from .blazeface.tflite import litert_infer
        from .weights import tflite_path

        backends["torchscript_int8"] = _torch_infer(torchscript_int8(variant, calib), threads)
        backends["litert_xnnpack"] = litert_infer(tflite_path(variant), threads)
    return backends


def measure(backends: dict, x: np.ndarray, rounds: int, warmup: int = 5, seed: int = 0) -> dict[str, list[float]]:
    names = list(backends)
    for name in names:
        for _ in range(warmup):
            backends[name](x)
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = random.Random(seed)
    for r in range(rounds):
        rng.shuffle(names)
        for name in names:
            infer = backends[name]
            t0 = time.perf_counter()
            infer(x)
            times[name].append((time.perf_counter() - t0) * 1e3)
        if (r + 1) % max(1, rounds // 5) == 0:
            log.info("round %d/%d", r + 1, rounds)
    return times


def table(times: dict[str, list[float]], reference: str = "litert_xnnpack", eager: str = "pytorch_eager") -> list:
    """One row per backend: p50, p99, p50 over the reference's, speed-up over eager PyTorch."""
    p50 = {n: float(np.median(t)) for n, t in times.items()}
    return [{"backend": n, "p50_ms": round(p50[n], 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
             f"p50_over_{reference}": round(p50[n] / p50[reference], 2) if reference in p50 else None,
             "speedup_vs_eager": round(p50[eager] / p50[n], 2) if eager in p50 else None}
            for n, t in times.items()]


def markdown(report: dict) -> str:
    """The report as a markdown table, one row per backend."""
    ref = report["reference"]
    rows = [(r["backend"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r[f"p50_over_{ref}"], r["speedup_vs_eager"])
            for r in sorted(report["results"], key=lambda r: r["p50_ms"])]
    return "\n".join([f"{report['model']}, {report['input'][0]}x{report['input'][1]}, {report['threads']} thread(s), "
                      f"{report['rounds']} interleaved rounds on one real frame; LLVM CPU `{report['cpu']['llvm_mcpu']}`", "",
                      md_table(["backend", "p50 ms", "p99 ms", f"p50 / {ref}", "speed-up vs eager"], rows), "",
                      f"`backend: auto` runs {report['auto']['backend']} here: {report['auto']['why']}"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack bench detector", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=VARIANTS, default="full")
    p.add_argument("--threads", type=int, default=1, help="threads for every backend (default 1, as deployed)")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--frame", type=Path, help=f"image to run on (default {DEFAULT_FRAME} in the data dir)")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    p.add_argument("--markdown", action="store_true", help="print a markdown table (with command, CPU and date) instead of JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    import cv2

    frame_path = args.frame or args.data_dir / DEFAULT_FRAME
    frame = cv2.imread(str(frame_path))
    if frame is None:
        p.error(f"cannot read {frame_path}")
    model = MODELS[args.variant]
    x, _ = model.preprocess(frame)
    calib = [] if args.variant == "yunet" else [model.preprocess(read_image(f))[0]
                                               for f in calibration_frames(args.data_dir)]
    backends = load_backends(args.variant, args.threads, calib, args.build_dir)
    log.info("measuring %s for %d rounds on %d thread(s)", ", ".join(backends), args.rounds, args.threads)
    times = measure(backends, x, args.rounds)
    reference = REFERENCE[args.variant]
    from .auto import choose

    auto, why = choose(args.build_dir / args.variant)  # what `backend: auto` runs here, from `make model`'s timing
    report = {"model": MODEL_NAME[args.variant], "input": [x.shape[2], x.shape[1]], "threads": args.threads,
              "cpu": describe(), "frame": str(frame_path), "rounds": args.rounds,
              "reference": reference, "results": table(times, reference),
              "auto": {"backend": auto, "why": why}}
    print(f"{markdown(report)}\n\n{provenance(p.prog, argv)}" if args.markdown else json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
