"""`facetrack bench identity`: latency of one face embedding per backend, one JSON object.

Every backend gets the same aligned chip (seeded noise: latency does not depend on the
pixels) in the same process, one after the other, with the same thread count; each result
is also compared with eager PyTorch so a fast but wrong build shows up here.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from common.report import provenance, table
from models.build import BUILD_DIR

from .build import build
from .spec import INPUT_SIZE
from .runtime import BACKENDS, EmbedderError, load_embedder

log = logging.getLogger("facetrack.models.facerec.bench")


def measure(embedder, chip: np.ndarray, runs: int, warmup: int) -> tuple[np.ndarray, list[float]]:
    for _ in range(warmup):
        out = embedder.embed(chip)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = embedder.embed(chip)
        times.append((time.perf_counter() - t0) * 1000)
    return out, times


def run(runs: int, warmup: int, threads: int, build_dir: Path, backends: list[str]) -> dict:
    build(["torchscript", "onnx", "llvm"], build_dir=build_dir)
    chip = np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    results, reference = {}, None
    for backend in ["torch", *[b for b in backends if b != "torch"]]:
        out, times = measure(load_embedder(backend, build_dir, threads), chip, runs, warmup)
        reference = out if reference is None else reference
        results[backend] = {"p50_ms": round(float(np.percentile(times, 50)), 3),
                            "p99_ms": round(float(np.percentile(times, 99)), 3),
                            "max_abs_diff_vs_torch": float(np.abs(out - reference).max())}
        log.info("%s: p50 %.1f ms", backend, results[backend]["p50_ms"])
    from models.auto import choose

    from .build import NAME

    auto, why = choose(build_dir / NAME)  # what `backend: auto` runs here, from `make model`'s timing
    return {"auto": {"backend": auto, "why": why}, "model": "facerec (dlib ResNet, face-api weights)", "input": [1, 3, INPUT_SIZE, INPUT_SIZE],
            "runs": runs, "warmup": warmup, "threads": threads, "tvm_tuned": False,
            "machine": platform.machine(), "cpus": os.cpu_count(), "backends": results}


def markdown(report: dict) -> str:
    """The report as a markdown table, one row per backend."""
    rows = [(name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_abs_diff_vs_torch']:.1e}")
            for name, r in report["backends"].items()]
    return "\n".join([f"{report['model']}, input {'x'.join(map(str, report['input']))}, {report['threads']} thread(s), "
                      f"{report['runs']} runs after {report['warmup']} warm-up; TVM build tuned: {report['tvm_tuned']}", "",
                      table(["backend", "p50 ms", "p99 ms", "max abs diff vs eager PyTorch"], rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack bench identity", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma list of {','.join(BACKENDS)}")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    p.add_argument("--markdown", action="store_true", help="print a markdown table (with command, CPU and date) instead of JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        p.error(f"unknown backend(s) {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}")
    try:
        result = run(args.runs, args.warmup, args.threads, args.build_dir, backends)
    except EmbedderError as e:
        log.error("%s", e)
        return 1
    print(f"{markdown(result)}\n\n{provenance(p.prog, argv)}" if args.markdown else json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
