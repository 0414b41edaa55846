"""A network camera that is down when the stack starts: capture waits for it, says why in one
line, and streams once it answers (a real GStreamer RTSP server that starts late, a real stack
under supervisord)."""
from __future__ import annotations

import os
import re

from common.bus import Subscriber
from common.messages import Frame
from facetrack.stack import Stack
from stack_support import wait_for
from stream_support import RtspCamera

# FFmpeg's ("[tcp @ 0x...] Connection to ... failed") and OpenCV's ("[ WARN:0@...] ... VIDEOIO") own lines
LIBRARY_NOISE = re.compile(r"^\[(tcp|rtsp) @ 0x|^\[ ?(WARN|ERROR|INFO):", re.M)


def test_camera_down_at_start_is_waited_for(tmp_path, free_port, data_dir):
    images = sorted((data_dir / "OTB-FaceOcc1-A" / "img1").glob("*.jpg"))[:20]
    camera = RtspCamera(free_port, images)
    overrides = {"stack": {"id": f"late{os.getpid()}"},
                 "capture": {"source": camera.url, "width": 0, "height": 0, "reconnect_max_s": 1.0}}
    programs = {p: False for p in ("detector", "tracker", "sink")}
    with Stack(tmp_path / "run", overrides, autostart=programs) as stack:
        stack.start(wait_for=("broker", "capture"))
        frames = Subscriber(stack.config.bus.subscribe, [Frame.TOPIC], hwm=1000)
        try:
            first_pid = stack.status()["capture"][1]
            # Long past supervisord's start retries (4 in ~10 s), the first capture is still waiting.
            wait_for(lambda: uptime_s(stack, "capture") >= 12, timeout=60, what="capture waiting 12 s")
            assert stack.status()["capture"] == ("RUNNING", first_pid), stack.log("capture")[-2000:]
            log = stack.log("capture")
            assert log.count("connection refused") == 1, log[-2000:]  # one line for the state, not per attempt
            assert not LIBRARY_NOISE.search(log), log[-2000:]
            assert "Traceback" not in log

            camera.start()
            got = wait_for(lambda: frames.drain(), timeout=60, what="frames from the late camera")
            assert all((f.width, f.height) == (camera.width, camera.height) for f in got)
            wait_for(lambda: "connected after" in stack.log("capture"), timeout=10, what="the 'connected' line")
            assert stack.status()["capture"] == ("RUNNING", first_pid)
            assert not LIBRARY_NOISE.search(stack.log("capture")), stack.log("capture")[-2000:]
        finally:
            frames.close()
            camera.stop()


def uptime_s(stack: Stack, program: str) -> int:
    """Seconds `program` has been RUNNING; AssertionError once it is not (it exited: gave up)."""
    status = stack.ctl("status", program)
    assert " RUNNING " in status, f"{status.strip()}\n{stack.log(program)[-2000:]}"
    h, m, s = re.search(r"uptime (\d+):(\d+):(\d+)", status).groups()
    return int(s) + 60 * int(m) + 3600 * int(h)
