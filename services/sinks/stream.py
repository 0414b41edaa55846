"""RTSP stream sink: the annotated video (tracks drawn as in the live view) as H.264 over RTSP.

    rtsp://<stream.host>:<stream.port><stream.path>     e.g. `ffplay rtsp://127.0.0.1:8554/facetrack`

GStreamer's RTSP server does the serving and the encoding, in a helper process
(services/sinks/rtsp_server.py) run by the system Python, which has Debian's PyGObject; the
venv has none. This side draws the tracks on each frame and hands it to the helper's stdin as
raw BGR from a writer thread that always takes the newest frame: a helper (or a client) that
falls behind skips frames and never slows the bus loop. The helper is started at the first
frame (its size is known then), again after a crash (at most every RESTART_S), and again when
the frame size changes. Nobody watching costs a pipe write per frame and no encoding.
"""
from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from common.config import Config
from services.sinks.drawing import draw_tracks
from services.sinks.base import Sink
from services.sinks.pairing import Paired

log = logging.getLogger("sink.rtsp")

HELPER = Path(__file__).resolve().with_name("rtsp_server.py")
RESTART_S = 2.0
READY_S = 10.0


class RtspHelper:
    """One rtsp_server.py process for frames of one size."""

    def __init__(self, cfg: Config, width: int, height: int):
        s = cfg.stream
        self.size = (width, height)
        cmd = [s.gst_python, str(HELPER), "--host", s.host, "--port", str(s.port), "--path", s.path,
               "--width", str(width), "--height", str(height), "--fps", str(s.fps), "--bitrate", str(s.bitrate_kbps)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        except OSError as exc:
            raise OSError(f"cannot run the RTSP helper with {s.gst_python} ({exc.strerror}): "
                          "install Debian's python3-gi and gir1.2-gst-rtsp-server-1.0") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both pipes
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        self.url: str | None = None
        line = self._ready_line()
        match = re.search(r"ready at (rtsp://\S+)", line)
        if match is None:
            self.stop()
            raise OSError(f"RTSP helper did not start: {line.strip() or 'no output'} (see the log above)")
        self.url = match.group(1)

    def _ready_line(self) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._stdout.readline().decode(errors="replace")),
                                  daemon=True)
        reader.start()
        reader.join(READY_S)
        return result[0] if result else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def write(self, image: np.ndarray) -> None:
        self._stdin.write(np.ascontiguousarray(image).data.cast("B"))
        self._stdin.flush()

    def stop(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RtspStream(Sink, kind="rtsp"):
    latest_only = True

    @classmethod
    def from_context(cls, ctx) -> RtspStream:
        return cls(ctx.config)

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self.helper: RtspHelper | None = None
        self.written = 0
        self.skipped = 0
        self.restarts = 0
        self.write_ms = 0.0

    def start(self) -> None:
        if not Path(self.cfg.stream.gst_python).exists():
            raise OSError(f"stream.gst_python {self.cfg.stream.gst_python} does not exist")
        self._thread = threading.Thread(target=self._run, name="rtsp-writer", daemon=True)
        self._thread.start()
        log.info("RTSP stream starts with the first frame (rtsp://%s:%s%s)", self.cfg.stream.host,
                 self.cfg.stream.port, self.cfg.stream.path)

    def handle(self, paired: Paired) -> None:
        image = draw_tracks(paired.pixels, paired.tracks.tracks, paired.names)
        with self._cond:
            if self._image is not None:
                self.skipped += 1  # the writer had not taken the previous one yet
            self._image = image
            self._seq += 1
            self._cond.notify()

    def _run(self) -> None:
        next_start = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._image is not None or self._closed)
                if self._closed:
                    return
                image, self._image = self._image, None
            assert image is not None  # the wait ends on an image unless closed
            size = (image.shape[1], image.shape[0])
            helper = self.helper
            if helper is not None and (not helper.alive() or helper.size != size):
                log.warning("RTSP helper %s: restarting", "exited" if not helper.alive() else "frame size changed")
                helper.stop()
                helper = self.helper = None
                self.restarts += 1
            if helper is None:
                if time.monotonic() < next_start:
                    continue
                next_start = time.monotonic() + RESTART_S
                try:
                    helper = self.helper = RtspHelper(self.cfg, *size)
                except OSError as exc:
                    log.error("%s", exc)
                    continue
                log.info("RTSP stream at %s (%dx%d, H.264 %d kbit/s)", helper.url, size[0], size[1],
                         self.cfg.stream.bitrate_kbps)
            t0 = time.perf_counter()
            try:
                helper.write(image)
            except (BrokenPipeError, ValueError, OSError):
                continue  # it died: the next frame restarts it
            self.write_ms = (time.perf_counter() - t0) * 1000
            self.written += 1

    def stats(self) -> dict[str, float]:
        return {"stream_written": self.written, "stream_skipped": self.skipped, "stream_restarts": self.restarts,
                "stream_write_ms": self.write_ms}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.helper is not None:
            self.helper.stop()
