"""Every service holds OpenCV and each loaded OpenBLAS to its configured thread count.

Runs `run_service` in a fresh interpreter (thread pools are per process) with numpy, scipy
and OpenCV loaded, as the tracker has them, and reads the counts back from the libraries.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys
import cv2, numpy, scipy.optimize
from common.service import run_service
from common.threads import blas_threads
def main(ctx):
    print(json.dumps({"cv2": cv2.getNumThreads(), "blas": blas_threads(), "omp": __import__("os").environ["OMP_NUM_THREADS"]}))
sys.exit(run_service(sys.argv[1], main, sys.argv[2:]))
"""


def _probe(service: str, *sets: str) -> dict:
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run([sys.executable, "-c", PROBE, service, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the libraries' default is already 1")
def test_tracker_and_detector_hold_every_pool_to_their_config():
    tracker = _probe("tracker", "tracker.threads=1")
    assert tracker["cv2"] == 1 and tracker["omp"] == "1"
    assert len(tracker["blas"]) >= 2, tracker  # numpy's, scipy's (and OpenCV's own) OpenBLAS were found
    assert set(tracker["blas"].values()) == {1}, tracker
    detector = _probe("detector", "detector.threads=2", "tracker.threads=1")
    assert detector["cv2"] == 2 and set(detector["blas"].values()) == {2}, detector


LATE = """
import json, sys
from common.service import run_service
def main(ctx):
    import cv2  # loaded after the limits were set, as the detector loads its runtime
    print(json.dumps({"cv2": cv2.getNumThreads()}))
sys.exit(run_service("detector", main, sys.argv[1:]))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the libraries' default is already 1")
def test_opencv_loaded_after_start_is_held_too():
    out = subprocess.run([sys.executable, "-c", LATE, "--set", "detector.threads=1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["cv2"] == 1
