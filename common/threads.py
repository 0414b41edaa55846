"""Library thread pools held to the count the config gives each service.

Left alone, OpenCV, OpenMP and every OpenBLAS copy loaded (numpy, scipy and OpenCV each bring
their own) start one thread per core; a tracker with a few faces then ran at 144 % CPU and
took the detector's core. `limit_threads` sets the environment for libraries loaded later
(TVM, ONNX Runtime, OpenMP) and calls each loaded OpenBLAS's own setter through ctypes (what
threadpoolctl does, without the dependency), since OpenBLAS reads its variable only at load.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import sys

from common.config import Config

log = logging.getLogger(__name__)

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "TVM_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
# OpenBLAS setters as the wheels name them: plain, scipy's build, numpy's 64-bit-int build.
_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")
_GETTERS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads", "scipy_openblas_get_num_threads64_")
_POOL_LIB = re.compile(r"openblas|libgomp|libomp")


def service_threads(service: str, cfg: Config) -> int:
    """The thread count of `service` from its config section (broker and watchdog do no
    library compute: 1)."""
    if service in ("detector", "remote-detector"):
        return cfg.detector.threads
    if service.startswith("sink"):
        return cfg.sink.threads
    return {"identity": cfg.identity.threads, "tracker": cfg.tracker.threads,
            "capture": cfg.capture.threads}.get(service, 1)


def loaded_pool_libraries() -> list[str]:
    """Paths of the OpenBLAS / OpenMP shared libraries mapped into this process."""
    with open("/proc/self/maps") as maps:
        return sorted({line.split()[-1] for line in maps if _POOL_LIB.search(line.rsplit("/", 1)[-1])})


def _call_each(lib_path: str, names: tuple[str, ...], *args) -> list[int]:
    lib = ctypes.CDLL(lib_path)
    out = []
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            out.append(fn(*args))
    return out


def blas_threads() -> dict[str, int]:
    """{library path: threads} for every loaded OpenBLAS (what the setters took)."""
    found = {}
    for path in loaded_pool_libraries():
        counts = _call_each(path, _GETTERS)
        if counts:
            found[path] = counts[0]
    return found


def limit_threads(n: int) -> None:
    """Hold OpenCV (if loaded: the broker and watchdog do not need its 40 MB; loaded later,
    it reads OPENCV_FOR_THREADS_NUM), OpenMP and every OpenBLAS of this process to `n` threads."""
    for var in ENV_VARS:
        os.environ[var] = str(n)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(n)
    for path in loaded_pool_libraries():
        _call_each(path, _SETTERS, ctypes.c_int(n))
        omp = getattr(ctypes.CDLL(path), "omp_set_num_threads", None)
        if omp is not None:
            omp(ctypes.c_int(n))
    log.info("library thread pools held to %d (OpenCV %s, OpenBLAS %s)", n,
             cv2.getNumThreads() if cv2 is not None else "not loaded", sorted(set(blas_threads().values())))
