"""A stand-in for picamera2, used ONLY because the real one cannot run here (no libcamera, no camera).

It implements exactly the documented calls the capture adapter makes, and enforces the
rules the real library has, so that breaking them fails a test:
  * Picamera2.global_camera_info(): one dict per attached camera ("Model", "Location", "Rotation",
    "Id", "Num"), as the real static method lists them; FAKE_PICAMERA2_CAMERAS cameras (default 1).
  * Picamera2(camera_num): IndexError for a camera that does not exist (the real one indexes
    global_camera_info()); RuntimeError if the camera is already open in this process.
  * create_video_configuration(main, lores, controls, ...): the documented defaults (main
    XBGR8888 1280x720, lores YUV420 at main's size when asked for) -> a config dict.
  * configure(config), start(), stop(), close().
  * capture_request() -> a request; it blocks for the frame interval (FrameRate control, 30 fps
    by default) and raises RuntimeError when every buffer is held (buffer_count requests not
    released): the real camera stalls then.
  * request.make_array(name): a copy of the stream's pixels in the format's memory order
    ("RGB888" = B, G, R per pixel; "BGR888" = R, G, B; per picamera2's manual, Appendix A);
    RuntimeError after release. request.release(): RuntimeError on a second release.

The scene is a folder of real images (env FAKE_PICAMERA2_DIR, e.g. a MOT img1/ folder): the
k-th request shows image k mod n, resized to the main size. Counters for tests live in STATE.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

STATE = {"created": 0, "open": set(), "requests": 0, "released": 0, "configs": [], "calls": []}
CAMERAS = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))


def reset() -> None:
    STATE.update(created=0, open=set(), requests=0, released=0, configs=[], calls=[])


def _scene() -> list[np.ndarray]:
    files = sorted(Path(os.environ["FAKE_PICAMERA2_DIR"]).glob("*.jpg"))
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]  # the light: R, G, B


class _Request:
    def __init__(self, cam: "Picamera2", rgb: np.ndarray):
        self._cam, self._rgb, self._released = cam, rgb, False

    def make_array(self, name: str) -> np.ndarray:
        if self._released:
            raise RuntimeError(f"Stream {name!r} is not defined")  # the real one clears its config on release
        stream = self._cam.config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        w, h = stream["size"]
        rgb = cv2.resize(self._rgb, (w, h), interpolation=cv2.INTER_AREA)
        if stream["format"] == "RGB888":
            return np.ascontiguousarray(rgb[:, :, ::-1])
        if stream["format"] == "BGR888":
            return rgb.copy()
        if stream["format"] == "XBGR8888":
            return np.dstack([rgb, np.full((h, w), 255, np.uint8)])
        if stream["format"] == "YUV420":
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        raise RuntimeError("Format " + stream["format"] + " not supported")

    def release(self) -> None:
        if self._released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self._released = True
        self._cam.held -= 1
        STATE["released"] += 1


class Picamera2:
    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": f"/base/axi/pcie@120000/rp1/i2c@{88000 + n}/imx708@1a",
                 "Num": n} for n in range(CAMERAS)]

    def __init__(self, camera_num: int = 0):
        if camera_num >= CAMERAS:
            raise IndexError("list index out of range")
        if camera_num in STATE["open"]:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        STATE["open"].add(camera_num)
        STATE["created"] += 1
        self.camera_num = camera_num
        self.config: dict | None = None
        self.started = False
        self.held = 0
        self._scene = _scene()
        self._next_t = 0.0

    def create_video_configuration(self, main={}, lores=None, raw={}, controls={}, buffer_count=6, **_):
        STATE["calls"].append("create_video_configuration")
        main = {"format": "XBGR8888", "size": (1280, 720)} | main
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"]} | lores
        return {"use_case": "video", "main": main, "lores": lores, "raw": raw,
                "controls": {"FrameDurationLimits": (33333, 33333)} | controls, "buffer_count": buffer_count}

    def configure(self, config: dict) -> None:
        STATE["calls"].append("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.config = config
        STATE["configs"].append(config)

    def start(self) -> None:
        STATE["calls"].append("start")
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self._next_t = time.monotonic()

    def capture_request(self) -> _Request:
        if not self.started:
            raise RuntimeError("Camera is not running")
        if self.held >= self.config["buffer_count"]:
            raise RuntimeError("all buffers are held by requests that were never released")
        fps = self.config["controls"].get("FrameRate", 30.0)
        self._next_t += 1.0 / fps
        time.sleep(max(0.0, self._next_t - time.monotonic()))
        rgb = self._scene[STATE["requests"] % len(self._scene)]
        STATE["requests"] += 1
        self.held += 1
        return _Request(self, rgb)

    def stop(self) -> None:
        STATE["calls"].append("stop")
        self.started = False

    def close(self) -> None:
        STATE["calls"].append("close")
        self.started = False
        STATE["open"].discard(self.camera_num)
