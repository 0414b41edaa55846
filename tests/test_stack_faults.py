"""Bad input in a running stack: one clear line from the service that got it; the rest runs."""
from __future__ import annotations

import os
import time

import zmq

from facetrack.stack import Stack


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line]


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_missing_source_and_broken_model_leave_the_rest_running(tmp_path, free_port):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    overrides = {
        "stack": {"id": f"faults{os.getpid()}"},
        "capture": {"source": "/nonexistent/camera.mp4"},
        "detector": {"model_dir": str(model_dir)},
        "sink": {"http_port": free_port},
    }
    with Stack(tmp_path / "run", overrides) as stack:
        stack.start(wait_for=("broker", "tracker", "sink"))
        assert wait_for(lambda: error_lines(stack.log("capture")) and error_lines(stack.log("detector")))
        capture_errors = set(error_lines(stack.log("capture")))
        detector_errors = set(error_lines(stack.log("detector")))
        # one line per attempt (supervisord retries), each naming the cause; no traceback
        assert all("/nonexistent/camera.mp4" in line for line in capture_errors)
        assert all(str(model_dir) in line for line in detector_errors)
        assert "Traceback" not in stack.log("capture") + stack.log("detector")

        # a malformed message on the bus is one warning line for each subscriber
        raw = zmq.Context.instance().socket(zmq.PUB)
        raw.connect(stack.config.bus.publish)

        def seen() -> bool:  # sent again until both saw it: a new PUB's first messages may be lost (slow joiner)
            raw.send_multipart([b"frame", b"\x93not a map"])
            time.sleep(0.2)
            return "malformed" in stack.log("tracker") and "malformed" in stack.log("sink")

        assert wait_for(seen, 30)
        raw.close(1000)
        status = stack.status()
        assert all(status[p][0] == "RUNNING" for p in ("broker", "tracker", "sink")), status
