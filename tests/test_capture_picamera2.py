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
from common.frame_ring import RingReader, lores_name, ring_path
from common.messages import Frame
from common.service import InputError
from models.dataset import DATA_DIR
from services.detector import to_main
from services.sources import open_source
from services.sources.picam import i420_to_bgr
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
                                "capture.height=288", "capture.fps=60", "capture.lores_width=176",
                                "capture.lores_height=144", env=env)
    reader, small = RingReader(f"facetrack-{stack}"), RingReader(lores_name(f"facetrack-{stack}"))
    got = collect(proc, sub, reader, count=30)
    lores = [small.read_at(m.ring_id, m.slot, m.lores_seq) for m, _ in got]  # within ring.slots of the newest
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    reader.close()
    small.close()
    sub.close()
    assert code == 0, err[-2000:]
    files = sorted((SEQ / "img1").glob("*.jpg"))
    assert len(got) == 30 and [m.frame_id for m, _ in got] == [m.source_pos for m, _ in got]
    for (msg, pixels), little in zip(got, lores):
        scene = cv2.imread(str(files[msg.source_pos]))
        assert np.array_equal(pixels, scene)
        assert msg.lores_seq > 0  # the lores copy of this very frame is in its ring
        if little is not None:  # (None: overwritten before this test read it)
            expected = cv2.resize(scene, (176, 144), interpolation=cv2.INTER_AREA)
            assert little.shape == (144, 176, 3) and np.abs(little.astype(int) - expected).mean() < 4
    assert sum(x is not None for x in lores) >= 10
    assert not ring_path(f"facetrack-{stack}").exists() and not ring_path(lores_name(f"facetrack-{stack}")).exists()
    assert "RGB888 (BGR pixels)" in err and "lores 176x144 frames beside main 352x288" in err


def padded_i420(bgr: np.ndarray, stride: int) -> np.ndarray:
    """I420 laid out as the ISP pads it: Y rows of `stride`, then U and V rows of stride / 2."""
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[:w * h].reshape(h, w), i420[w * h:w * h * 5 // 4], i420[w * h * 5 // 4:]
    out = np.zeros(stride * h * 3 // 2, np.uint8)
    out[:stride * h].reshape(h, stride)[:, :w] = y
    half = stride // 2
    out[stride * h:stride * h + half * h // 2].reshape(h // 2, half)[:, :w // 2] = u.reshape(h // 2, w // 2)
    out[stride * h + half * h // 2:].reshape(h // 2, half)[:, :w // 2] = v.reshape(h // 2, w // 2)
    return out.reshape(h * 3 // 2, stride)


def test_lores_yuv_with_and_without_row_padding_is_the_same_picture():
    scene = cv2.resize(cv2.imread(str(sorted((SEQ / "img1").glob("*.jpg"))[0])), (200, 150))
    plain = cv2.cvtColor(cv2.cvtColor(scene, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420)
    assert np.array_equal(i420_to_bgr(cv2.cvtColor(scene, cv2.COLOR_BGR2YUV_I420), 200, 150), plain)
    assert np.array_equal(i420_to_bgr(padded_i420(scene, 256), 200, 150), plain)


def test_source_gives_the_lores_copy_of_the_frame_it_read(fake):
    src = camera(width=352, height=288, fps=200, lores_width=176, lores_height=144)
    src.open()
    files = sorted((SEQ / "img1").glob("*.jpg"))
    for k in range(3):
        image, _ = src.read()
        expected = cv2.resize(cv2.imread(str(files[k])), (176, 144), interpolation=cv2.INTER_AREA)
        assert src.lores().shape == (144, 176, 3) and np.abs(src.lores().astype(int) - expected).mean() < 4
    src.close()
    plain = camera(fps=200, lores_width=0, lores_height=0)
    plain.open()
    plain.read()
    assert plain.lores() is None
    plain.close()


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_detections_on_lores_land_on_the_face_in_main_pixels(fake):
    """The detector's lores path: the model sees the ISP's 320x240 copy of a 1280x720 main frame
    (another aspect: each axis scales on its own); boxes and eyes mapped back must sit on the
    sequence's annotated face in main pixels."""
    from models.runtime import load_detector

    detector = load_detector("full", "tvm", score_threshold=0.5, num_threads=1)
    gt = {int(r[0]): [float(v) for v in r[2:6]] for r in
          (line.split(",") for line in (SEQ / "gt/gt.txt").read_text().splitlines())}
    src = camera(width=1280, height=720, fps=200, lores_width=320, lores_height=240)
    info = src.open()
    sx, sy = 1280 / 352, 720 / 288  # the scene's 352x288 frames are stretched to main
    hits = 0
    for k in range(0, 12):
        src.read()
        found = detector.detect(src.lores())
        boxes, keypoints = to_main(found.boxes, found.keypoints, src.lores().shape, info.width, info.height)
        x, y, w, h = gt[k + 1]
        truth = [x * sx, y * sy, (x + w) * sx, (y + h) * sy]
        if len(boxes):
            best = int(np.argmax([iou(b, truth) for b in boxes]))
            hits += iou(boxes[best], truth) > 0.4
            eyes = keypoints[best][:2]
            assert all(truth[0] <= ex <= truth[2] and truth[1] <= ey <= truth[3] for ex, ey in eyes)
    src.close()
    assert hits >= 9, hits


def test_a_stack_on_the_camera_detects_on_lores_in_main_pixels(tmp_path, monkeypatch):
    """capture -> lores ring -> detector under supervisord with the stand-in camera: the detector
    says it reads lores frames and its Detections sit on the annotated face in main pixels."""
    from common.messages import Detections
    from facetrack.stack import Stack
    from stack_support import MetricsWatch, unique_id

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_PICAMERA2_DIR", str(SEQ / "img1"))
    gt = [[float(v) for v in line.split(",")[2:6]] for line in (SEQ / "gt/gt.txt").read_text().splitlines()]
    stack = Stack(tmp_path / "stack", {"stack": {"id": unique_id("lores", tmp_path)},
                                       "capture": {"source": "picamera2://0", "width": 704, "height": 576, "fps": 15,
                                                   "lores_width": 320, "lores_height": 240},
                                       "detector": {"every_n": 1}, "sink": {"http_port": 0}})
    with stack:
        stack.start(wait_for=("broker", "capture", "detector"), timeout=120)
        watch = MetricsWatch(stack)
        sub = Subscriber(stack.config.bus.subscribe, [Detections.TOPIC], hwm=1000)
        try:
            watch.wait("detector", lambda m: m.extra.get("lores") == 1 and m.frames_out >= 5, timeout=120)
            found = [m for m in (sub.recv(timeout_ms=2000) for _ in range(10)) if m is not None]
        finally:
            sub.close()
            watch.close()
    scored = []
    for det in found:
        x, y, w, h = gt[det.frame_id % len(gt)]
        truth = [2 * x, 2 * y, 2 * (x + w), 2 * (y + h)]  # main is the 352x288 scene at twice the size
        scored.append(max((iou(b, truth) for b in det.boxes), default=0.0))
    assert len(scored) >= 5 and sum(s > 0.4 for s in scored) >= 0.7 * len(scored), scored
