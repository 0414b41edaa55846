"""The whole stack under supervisord with the identity program on: the woman of FaceOcc1,
enrolled from three frames of -A with the CLI, is named on her track through -B, by the
real detector -> tracker -> identity chain. Slow (make test-slow): model loads dominate.
"""
from __future__ import annotations

import os
import time

import pytest

from common.bus import Subscriber
from common.messages import Identity, Tracks
from facetrack.identity_cli import main as cli
from facetrack.stack import Stack

from identity_probes import DATA


@pytest.mark.slow
def test_stack_names_the_enrolled_face(tmp_path, free_port):
    run = tmp_path / "run"
    run.mkdir()
    enrol = [str(DATA / "OTB-FaceOcc1-A" / "img1" / f"{f:06d}.jpg") for f in (1, 50, 100)]
    assert cli(["enroll", "alice", *enrol, "--gallery", str(run / "gallery.sqlite")]) == 0
    overrides = {"stack": {"id": f"ids{os.getpid()}"}, "sink": {"http_port": free_port},
                 "capture": {"source": str(DATA / "OTB-FaceOcc1-B"), "width": 0, "height": 0, "loop": False}}
    with Stack(run, overrides, autostart={"capture": False, "identity": True}) as stack:
        stack.start(wait_for=("broker", "detector", "tracker", "identity"))
        sub = Subscriber(stack.config.bus.subscribe, [Identity.TOPIC, Tracks.TOPIC], hwm=1000)
        deadline = time.monotonic() + 90  # "running" in supervisord is not "model loaded"
        while "model loaded" not in stack.log("detector") or "gallery" not in stack.log("identity"):
            assert time.monotonic() < deadline, stack.log("identity")[-2000:]
            time.sleep(0.5)
        time.sleep(1.0)
        stack.ctl("start", "capture", check=True)
        names, track_frames, named_frames = {}, 0, 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            msg = sub.recv(timeout_ms=500)
            if msg is None and stack.status()["capture"][0] == "EXITED":
                break
            if isinstance(msg, Identity):
                names[msg.track_id] = msg.name
            elif isinstance(msg, Tracks):
                confirmed = [t for t in msg.tracks if t.state == "confirmed"]
                track_frames += len(confirmed)
                named_frames += sum(names.get(t.id) == "alice" for t in confirmed)
        sub.close()
        log = stack.log("identity")
    print(f"\nstack: {named_frames} of {track_frames} confirmed track-frames named alice; identities {names}")
    assert set(names.values()) == {"alice"}, log[-2000:]
    assert named_frames >= 0.8 * track_frames > 0
