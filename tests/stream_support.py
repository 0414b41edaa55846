"""A real RTSP camera for tests: GStreamer's RTSP server (services/sinks/rtsp_server.py under
Debian's Python) serving real face frames as H.264, started and stopped when a test says so
(a camera that boots late, reboots, or loses power)."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from common.config import ROOT, load_config
from needs import missing

SERVER = ROOT / "services" / "sinks" / "rtsp_server.py"


class RtspCamera:
    """`start()` listens on rtsp://127.0.0.1:PORT/cam and plays `images` in a loop at `fps`; `stop()` kills it."""

    def __init__(self, port: int, images: list[Path], fps: int = 10):
        self.port, self.fps = port, fps
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.frames = [cv2.imread(str(p)) for p in images]
        self.height, self.width = self.frames[0].shape[:2]
        self.python = load_config().stream.gst_python
        if not Path(self.python).exists():
            missing(f"{self.python} with python3-gi", "`make apt` installs Debian's GStreamer RTSP server")
        self.proc: subprocess.Popen | None = None
        self._feed: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> "RtspCamera":
        self.proc = subprocess.Popen(
            [self.python, str(SERVER), "--port", str(self.port), "--path", "/cam", "--width", str(self.width),
             "--height", str(self.height), "--fps", str(self.fps)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        line = self.proc.stdout.readline().decode()  # blocks until it listens (or exits)
        assert "rtsp server ready" in line and time.monotonic() < end, \
            f"RTSP server did not start: {line}{self.proc.stderr.read().decode()[-1000:]}"
        self._feed = threading.Thread(target=self._play, args=(self.proc,), daemon=True)
        self._feed.start()
        return self

    def _play(self, proc: subprocess.Popen) -> None:
        i = 0
        while proc.poll() is None:
            try:
                proc.stdin.write(np.ascontiguousarray(self.frames[i % len(self.frames)]).tobytes())
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            i += 1
            time.sleep(1.0 / self.fps)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._feed.join(5)
            self.proc = None
