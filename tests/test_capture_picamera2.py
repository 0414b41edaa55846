"""The picamera2 adapter against picamera2's documented API.

picamera2 cannot run here (no libcamera, no camera, not on PyPI), so these tests use the
stand-in in tests/capture_fakes/picamera2: it implements exactly the documented calls the
adapter makes and enforces the real library's rules (one Picamera2 per camera, requests
must be released, "RGB888" is B, G, R in memory). On a Pi the adapter has NOT been run by
these tests; see services/sources/picam.py.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.bus import Subscriber
from common.config import CaptureConfig
from common.frame_ring import RingReader, ring_path
from common.messages import Frame
from common.service import InputError
from models.dataset import DATA_DIR
from services.sources import open_source
from test_capture_service import collect, finish, start_capture

FAKES = Path(__file__).resolve().parent / "capture_fakes"
SEQ = DATA_DIR / "OTB-FaceOcc1-A"
pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture
def fake(monkeypatch):
    """The stand-in module as `picamera2`, showing the real frames of the OTB sequence."""
    monkeypatch.setenv("FAKE_PICAMERA2_DIR", str(SEQ / "img1"))
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2
    picamera2.reset()
    yield picamera2
    sys.modules.pop("picamera2", None)


def camera(**capture):
    return open_source(CaptureConfig(source="picamera2://0", **capture), threading.Event())


def test_configures_bgr_main_and_yuv_lores_once(fake):
    src = camera(width=352, height=288, fps=60, lores_width=176, lores_height=144)
    info = src.open()
    assert (info.width, info.height, info.fps, info.live) == (352, 288, 60, True)
    [config] = fake.STATE["configs"]
    assert config["main"] == {"format": "RGB888", "size": (352, 288)}
    assert config["lores"] == {"format": "YUV420", "size": (176, 144)}
    assert config["controls"]["FrameRate"] == 60
    assert fake.STATE["calls"] == ["create_video_configuration", "configure", "start"]
    for _ in range(20):
        src.read()
    src.close()
    assert fake.STATE["created"] == 1  # one Picamera2, never one per frame
    assert fake.STATE["calls"][-2:] == ["stop", "close"] and not fake.STATE["open"]


def test_frames_are_the_scene_in_bgr_and_every_request_is_released(fake):
    src = camera(width=352, height=288, fps=200)
    src.open()
    files = sorted((SEQ / "img1").glob("*.jpg"))
    for k in range(12):  # more than buffer_count (6): an unreleased request would stall the camera
        image, pos = src.read()
        assert pos == k and image.dtype == np.uint8 and image.shape == (288, 352, 3)
        assert np.array_equal(image, cv2.imread(str(files[k])))  # BGR, as OpenCV reads the JPEG
    assert fake.STATE["requests"] == fake.STATE["released"] == 12
    src.close()


def test_default_size_is_picamera2s_and_lores_can_be_left_out(fake):
    src = camera(width=0, height=0, lores_width=0, lores_height=0)
    info = src.open()
    [config] = fake.STATE["configs"]
    assert (info.width, info.height, info.fps) == (1280, 720, 30.0)
    assert config["lores"] is None and "FrameRate" not in config["controls"]
    src.close()


def test_request_released_even_when_make_array_fails(fake, monkeypatch):
    src = camera(fps=200)
    src.open()

    def broken(self, name):
        raise RuntimeError("mmap failed")
    monkeypatch.setattr(fake._Request, "make_array", broken)
    with pytest.raises(RuntimeError):
        src.read()
    assert fake.STATE["requests"] == fake.STATE["released"] == 1
    src.close()


def test_missing_camera_and_failed_capture_are_one_line(fake, monkeypatch):
    with pytest.raises(InputError, match=r"^capture source picamera2://1: no such camera$"):
        open_source(CaptureConfig(source="picamera2://1"), threading.Event()).open()
    src = camera(fps=200)
    src.open()
    with pytest.raises(InputError, match=r"^capture source picamera2://0: cannot open the camera, is another process using it\? "):
        camera().open()  # a second Picamera2 on the same camera (the real one refuses too)
    monkeypatch.setattr(fake.Picamera2, "capture_request",
                        lambda self: (_ for _ in ()).throw(RuntimeError("Camera frontend has timed out!")))
    with pytest.raises(InputError, match="camera stopped delivering frames \\(Camera frontend has timed out!\\)"):
        src.read()
    src.close()


def test_capture_service_writes_camera_frames_into_the_ring(tmp_path, proxy):
    """The real capture process with the stand-in camera: frames reach the ring and the bus."""
    sub = Subscriber(proxy[1], [Frame.TOPIC], hwm=1000)
    time.sleep(0.2)  # the subscription reaches the proxy before capture publishes
    env = {"PYTHONPATH": os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]),
           "FAKE_PICAMERA2_DIR": str(SEQ / "img1")}
    proc, stack = start_capture(tmp_path, proxy, "capture.source=picamera2://0", "capture.width=352",
                                "capture.height=288", "capture.fps=60", env=env)
    reader = RingReader(f"facetrack-{stack}")
    got = collect(proc, sub, reader, count=30)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    reader.close()
    sub.close()
    assert code == 0, err[-2000:]
    files = sorted((SEQ / "img1").glob("*.jpg"))
    assert len(got) == 30 and [m.frame_id for m, _ in got] == [m.source_pos for m, _ in got]
    for msg, pixels in got:
        assert np.array_equal(pixels, cv2.imread(str(files[msg.source_pos])))
    assert not ring_path(f"facetrack-{stack}").exists()
    assert "RGB888 (BGR pixels)" in err
