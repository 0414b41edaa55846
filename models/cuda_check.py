"""Run the CUDA build on a GPU machine and compare it with the host (llvm) build.

This machine has no GPU, so the check goes in two steps, with a folder carried between them:

    python -m models.cuda_check prepare DIR      # here: a real frame's input, llvm outputs, cuda.so
    python3 DIR/../models/cuda_check.py run DIR  # on the GPU machine (needs apache-tvm, apache-tvm-ffi;
                                                 # TVM_CUDA_COMPILE_MODE=nvcc compiles the kernels at load)

`run` prints one JSON object: max abs difference of both raw outputs, and latency p50/p99.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

FRAME = Path(__file__).resolve().parents[2] / "shared" / "data" / "OTB-FaceOcc1-A" / "img1" / "000001.jpg"


def prepare(out: Path, variant: str = "full") -> None:
    import tvm
    from tvm import relax

    from models.blazeface import INPUT_SIZE
    from models.blazeface.postprocess import preprocess
    from models.images import read_image
    from models.runtime import BUILD_DIR

    out.mkdir(parents=True, exist_ok=True)
    x, _ = preprocess(read_image(FRAME), INPUT_SIZE[variant])
    x = np.ascontiguousarray(x, np.float32)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(BUILD_DIR / variant / "llvm.so")), tvm.cpu())
    ref = vm["main"](tvm.runtime.tensor(x))
    np.save(out / "x.npy", x)
    for i in range(2):
        np.save(out / f"ref{i}.npy", ref[i].numpy())
    shutil.copy(BUILD_DIR / variant / "cuda.so", out / "cuda.so")


def run(folder: Path, rounds: int = 300) -> dict:
    import tvm
    from tvm.runtime.vm import VirtualMachine

    dev = tvm.cuda(0)
    vm = VirtualMachine(tvm.runtime.load_module(str(folder / "cuda.so")), dev)
    x = tvm.runtime.tensor(np.load(folder / "x.npy"), dev)
    out = [o.numpy() for o in vm["main"](x)]
    diffs = [float(np.abs(out[i] - np.load(folder / f"ref{i}.npy")).max()) for i in range(2)]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        [o.numpy() for o in vm["main"](x)]  # outputs copied back to the host, as the detector would
        times.append((time.perf_counter() - t) * 1000)
    steady = np.array(times[rounds // 6:])
    return {"backend": "tvm_cuda", "device": dev.device_name, "max_abs_diff_regressors": diffs[0],
            "max_abs_diff_logits": diffs[1], "p50_ms": round(float(np.percentile(steady, 50)), 3),
            "p99_ms": round(float(np.percentile(steady, 99)), 3)}


if __name__ == "__main__":
    verb, folder = sys.argv[1], Path(sys.argv[2])
    if verb == "prepare":
        prepare(folder)
    else:
        print(json.dumps(run(folder)))
