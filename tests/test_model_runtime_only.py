"""The detector process loads the TVM runtime only: no compiler library, no torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.build import build
from models.weights import fetch

PROBE = """
import json, sys
import numpy as np
from models import runtime
runtime.tvm_runtime_only()
from models.runtime import load_detector
found = load_detector(sys.argv[1], "tvm", num_threads=1).detect(np.zeros((480, 640, 3), np.uint8))
maps = open("/proc/self/maps").read()
print(json.dumps({"torch": sys.modules.get("torch") is not None, "compiler": "libtvm_compiler" in maps,
                  "runtime": "libtvm_runtime" in maps, "found": len(found)}))
"""


@pytest.mark.parametrize("variant", ["full", "yunet"])
def test_detector_runs_on_the_runtime_library_without_torch(variant):
    fetch()
    build([variant], ["torchscript", "onnx", "llvm"])
    out = subprocess.run([sys.executable, "-c", PROBE, variant], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe == {"torch": False, "compiler": False, "runtime": True, "found": 0}
