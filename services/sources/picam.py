"""The Raspberry Pi camera (CSI) through picamera2: `picamera2://0` (the number is camera_num).

No decoding on the Pi's CPU: the ISP delivers the `main` stream as "RGB888", which picamera2's
manual (Appendix A) defines as pixels ordered [B, G, R], exactly what OpenCV expects; the
`lores` stream (YUV420, capture.lores_width x lores_height; 0 leaves it out) is the same picture
scaled by the ISP: capture puts it, as BGR, in a second ring beside `main` and the detector
runs on it (services/detector.py), so no CPU resizes full frames for the model. YUV420, because
a Pi 4's ISP gives lores only in YUV; its rows may be padded to the ISP's stride.

Rules from the field, kept here: one Picamera2 per process, created in open() and never in
a loop; every request released (try/finally) or the camera stalls once its buffers are held;
stop() and close() at the end. picamera2 is imported only for this URI: it exists only on
Raspberry Pi OS (`apt install python3-picamera2`, venv made with --system-site-packages).
"""
from __future__ import annotations

import logging
from typing import Any

import cv2
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
        self._lores_size: tuple[int, int] | None = None
        self._lores: np.ndarray | None = None

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
        self._lores_size = tuple(config["lores"]["size"]) if config.get("lores") else None
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
            if self._lores_size is not None:
                self._lores = i420_to_bgr(request.make_array("lores"), *self._lores_size)
        finally:
            request.release()
        self._pos += 1
        return image, self._pos - 1

    def lores(self) -> np.ndarray | None:
        return self._lores

    def close(self) -> None:
        if self._cam is not None:
            self._cam.stop()
            self._cam.close()
            self._cam = None


def i420_to_bgr(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """picamera2's YUV420 array ((height * 3 / 2) rows of the stride) as a BGR image.

    With no padding the array is plain I420; with rows padded to a stride S the Y plane is
    `height` rows of S, then U and V are each height/2 rows of S/2 (the ISP's layout).
    """
    stride = yuv.shape[1]
    if stride != width:
        flat = yuv.reshape(-1)
        y = yuv[:height, :width]
        half = stride // 2
        u = flat[stride * height:stride * height + half * height // 2].reshape(height // 2, half)[:, :width // 2]
        v_at = stride * height + half * height // 2
        v = flat[v_at:v_at + half * height // 2].reshape(height // 2, half)[:, :width // 2]
        yuv = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
