"""The Raspberry Pi camera (CSI) through picamera2: `picamera2://0` (the number is camera_num).

No decoding on the Pi's CPU: the ISP delivers the `main` stream as "RGB888", which picamera2's
manual (Appendix A) defines as pixels ordered [B, G, R], exactly what OpenCV expects; the
`lores` stream (YUV420, capture.lores_width x lores_height; 0 leaves it out) is set up
beside it for consumers that want a small frame. The ring carries `main` only.

Rules from the field, kept here: one Picamera2 per process, created in open() and never in
a loop; every request released (try/finally) or the camera stalls once its buffers are held;
stop() and close() at the end. picamera2 is imported only for this URI: it exists only on
Raspberry Pi OS (`apt install python3-picamera2`, venv made with --system-site-packages).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from common.config import CaptureConfig
from common.service import InputError
from services.sources.base import Source, SourceInfo, one_line

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # picamera2's video configuration default frame duration is 33333 us


class PiCameraSource(Source):
    """Frames of one Pi camera; position counts frames since open()."""

    def __init__(self, camera_num: int, capture: CaptureConfig, name: str | None = None):
        self.camera_num = camera_num
        self.capture = capture
        self.name = name or f"picamera2://{camera_num}"
        self._cam: Any | None = None  # a picamera2.Picamera2 once open
        self._pos = 0

    def open(self) -> SourceInfo:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise InputError(f"capture source {self.name}: picamera2 is not installed (Raspberry Pi OS: "
                             "apt install python3-picamera2, and a venv made with --system-site-packages)") from None
        try:
            cam = Picamera2(self.camera_num)
        except IndexError:  # picamera2 indexes its list of cameras with camera_num
            raise InputError(f"capture source {self.name}: no such camera") from None
        except RuntimeError as exc:
            raise InputError(f"capture source {self.name}: cannot open the camera, is another process "
                             f"using it? ({one_line(exc)})") from None
        try:
            config = cam.create_video_configuration(**self._streams())
            cam.configure(config)
            cam.start()
        except RuntimeError as exc:
            cam.close()
            raise InputError(f"capture source {self.name}: cannot start the camera ({one_line(exc)})") from None
        self._cam, self._pos = cam, 0
        width, height = config["main"]["size"]
        fps = self.capture.fps or DEFAULT_FPS
        log.info("capture source %s: main %dx%d RGB888 (BGR pixels), lores %s, %.1f fps", self.name, width,
                 height, config.get("lores") and config["lores"]["size"], fps)
        return SourceInfo(width, height, fps, live=True)

    def _streams(self) -> dict:
        """Keyword arguments of create_video_configuration for this capture config."""
        c = self.capture
        main: dict[str, object] = {"format": "RGB888"}
        if c.width and c.height:
            main["size"] = (c.width, c.height)
        streams: dict[str, dict[str, object]] = {"main": main}
        if c.lores_width and c.lores_height:
            streams["lores"] = {"format": "YUV420", "size": (c.lores_width, c.lores_height)}
        if c.fps:
            streams["controls"] = {"FrameRate": c.fps}
        return streams

    def read(self) -> tuple[np.ndarray, int] | None:
        try:
            assert self._cam is not None, "read() before open()"
            request = self._cam.capture_request()
        except RuntimeError as exc:
            raise InputError(f"capture source {self.name}: camera stopped delivering frames ({one_line(exc)})") from None
        try:
            image = request.make_array("main")  # a copy: the camera buffer goes back at once
        finally:
            request.release()
        self._pos += 1
        return image, self._pos - 1

    def close(self) -> None:
        if self._cam is not None:
            self._cam.stop()
            self._cam.close()
            self._cam = None
