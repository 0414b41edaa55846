"""Each capture source on real data: files written from real face frames, the MOT sequence in
shared/data, the bundled demo clip (and its ground truth), a live MJPEG stream over HTTP
served from a thread (dropped and reconnected), and the one-line errors of missing sources."""
from __future__ import annotations

import http.server
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from common.config import CaptureConfig
from common.service import InputError
from models.dataset import DATA_DIR
from services.demo import make_demo
from services.sources import DEMO_CLIP, fit, open_source, target_size
from services.sources.network import redact

SEQ = DATA_DIR / "OTB-FaceOcc1-A"
needs_seq = pytest.mark.usefixtures("data_dir")


def seq_files(n: int | None = None) -> list[Path]:
    return sorted((SEQ / "img1").glob("*.jpg"))[:n]


def source(uri: str, **capture) -> object:
    return open_source(CaptureConfig(source=uri, **capture), threading.Event())


def read_all(src, limit: int = 10_000) -> list[tuple[np.ndarray, int]]:
    out = []
    while len(out) < limit and (item := src.read()) is not None:
        out.append((item[0].copy(), item[1]))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-9))


@pytest.fixture
def face_video(tmp_path) -> tuple[Path, list[np.ndarray]]:
    """An MJPG .avi at 25 fps written by cv2.VideoWriter from 20 real face frames."""
    frames = [cv2.imread(str(f)) for f in seq_files(20)]
    path = tmp_path / "faces.avi"
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25, (352, 288))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path, frames


@needs_seq
@pytest.mark.parametrize("form", ["path", "file-uri"])
def test_video_file_reads_every_frame(face_video, form):
    path, frames = face_video
    src = source(str(path) if form == "path" else f"file://{path}")
    info = src.open()
    assert (info.width, info.height, info.fps, info.live) == (352, 288, 25.0, False)
    got = read_all(src)
    assert [pos for _, pos in got] == list(range(20))
    assert all(psnr(image, ref) > 30 for (image, _), ref in zip(got, frames))
    src.rewind()  # what capture does when capture.loop is true
    assert [pos for _, pos in read_all(src, 3)] == [0, 1, 2]
    src.close()
    src.close()


@needs_seq
@pytest.mark.parametrize("form", ["path", "file-uri"])
def test_mot_sequence_reads_images_in_order(form):
    src = source(str(SEQ) if form == "path" else f"file://{SEQ}")
    info = src.open()
    assert (info.width, info.height, info.fps, info.live) == (352, 288, 30.0, False)
    got = read_all(src)
    files = seq_files()
    assert len(got) == len(files) == 300
    assert [pos for _, pos in got] == list(range(300))
    for i in (0, 137, 299):
        assert np.array_equal(got[i][0], cv2.imread(str(files[i])))
    src.close()


def _face_crop(image: np.ndarray, left: float, top: float, w: float, h: float) -> np.ndarray:
    """The box (0-based left/top) resampled to 48x52 at sub-pixel position."""
    patch = cv2.getRectSubPix(image, (round(w), round(h)), (left + w / 2 - 0.5, top + h / 2 - 0.5))
    return cv2.resize(patch, (48, 52), interpolation=cv2.INTER_AREA)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = (cv2.cvtColor(v, cv2.COLOR_BGR2GRAY).astype(np.float64).ravel() for v in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_demo_clip_loops_at_its_rate_and_its_gt_boxes_the_faces():
    """The clip: 15 s at 30 fps, small, seamless at the loop; gt.txt's boxes sit on the faces
    (the crop matches the face on the still photo)."""
    gt = np.loadtxt(DEMO_CLIP.parent / "gt" / "gt.txt", delimiter=",")
    assert set(gt[:, 1]) == {1, 2} and gt[:, 0].min() >= 1 and gt[:, 0].max() <= 450
    assert not {1, 450} - set(gt[gt[:, 1] == 1, 0])  # face 1 in the first and last frame
    assert len(set(range(1, 451)) - set(gt[:, 0])) > 10  # some frames show no face at all
    face = _face_crop(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), *make_demo.ASTRONAUT_FACE)
    faces = {1: face, 2: face[:, ::-1]}
    wanted = {1: [1], 316: [1, 2], 450: [1]}  # frames without roll: first, wide shot (t = 10.5 s), last
    assert DEMO_CLIP.stat().st_size < 3 * 2**20
    src = source("demo://")
    info = src.open()
    assert (info.width, info.height, info.fps, info.live) == (640, 480, 30.0, False)
    kept, checked, count = {}, 0, 0
    while (item := src.read()) is not None:
        image, pos = item
        count += 1
        if pos in (0, 1, 449):
            kept[pos] = image.copy()
        for face_id in wanted.get(pos + 1, []):
            row = gt[(gt[:, 0] == pos + 1) & (gt[:, 1] == face_id)][0]
            assert row[8] == 1.0  # fully visible
            crop = _face_crop(image, row[2] - 1, row[3] - 1, row[4], row[5])  # gt is 1-based
            assert _ncc(crop, faces[face_id]) > 0.9, (pos + 1, face_id)
            checked += 1
    src.close()
    assert count == 450 and checked == 4
    # The clip ends where it starts, so a loop does not jump: the seam looks like any other step.
    assert psnr(kept[449], kept[0]) > psnr(kept[0], kept[1]) - 3


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    """multipart/x-mixed-replace JPEG stream, like an IP camera; drops the connection after
    `per_connection` frames, as a Wi-Fi camera does."""
    jpegs: list[bytes] = []
    per_connection = 10**9
    connections = 0

    def do_GET(self):
        type(self).connections += 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(self.per_connection):
                jpeg = self.jpegs[i % len(self.jpegs)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (len(jpeg), jpeg))
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def mjpeg_server():
    def start(per_connection: int) -> str:
        handler = type("Handler", (_MjpegHandler,), {"jpegs": [f.read_bytes() for f in seq_files(30)],
                                                     "per_connection": per_connection, "connections": 0})
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg", handler
    servers = []
    start.servers = servers
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@needs_seq
def test_http_mjpeg_stream_reconnects_when_dropped(mjpeg_server):
    url, handler = mjpeg_server(per_connection=12)
    stop = threading.Event()
    src = open_source(CaptureConfig(source=url), stop)
    info = src.open()
    assert (info.width, info.height, info.live) == (352, 288, True)
    t0 = time.monotonic()
    got = read_all(src, 30)  # 12 per connection: two drops on the way
    assert [pos for _, pos in got] == list(range(30))
    assert src.reconnects >= 2 and handler.connections >= 3
    assert time.monotonic() - t0 < 10
    refs = [cv2.imread(str(f)) for f in seq_files(12)]
    # FFmpeg's JPEG decoder rounds differently from libjpeg: near-equal, not equal.
    assert all(psnr(image, refs[pos % 12]) > 35 for image, pos in got)
    # The camera goes away for good: the source keeps retrying until the service stops.
    for server in mjpeg_server.servers:
        server.shutdown()
        server.server_close()
    threading.Timer(1.0, stop.set).start()
    t0 = time.monotonic()
    while src.read() is not None:  # drains what FFmpeg had buffered, then retries
        pass
    assert time.monotonic() - t0 < 3
    src.close()


def test_http_h264_stream_decodes_like_the_file(tmp_path):
    """H.264 over the network (here the demo clip served over HTTP, as an IP camera's stream
    would be): the same frames as decoding the file, each one exactly."""
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = socketserver.ThreadingTCPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(DEMO_CLIP.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = source(f"http://127.0.0.1:{server.server_address[1]}/{DEMO_CLIP.name}")
        info = src.open()
        assert (info.width, info.height, info.live) == (640, 480, True)
        got = read_all(src, 40)
        src.close()
    finally:
        server.shutdown()
        server.server_close()
    cap = cv2.VideoCapture(str(DEMO_CLIP), cv2.CAP_FFMPEG)
    for image, pos in got:
        assert np.array_equal(image, cap.read()[1]), pos
    assert [pos for _, pos in got] == list(range(40))


@pytest.mark.parametrize("uri, says", [
    ("/nonexistent/clip.mp4", "capture source /nonexistent/clip.mp4: no such file"),
    ("file:///nonexistent/clip.mp4", "capture source file:///nonexistent/clip.mp4: no such file"),
    ("/dev/video3", "capture source /dev/video3: no such device"),
    ("v4l2:///dev/video9", "capture source v4l2:///dev/video9: no such device"),
    ("picamera2://0", "capture source picamera2://0: picamera2 is not installed"),
    ("picamera2://cam", "capture source picamera2://cam: camera number 'cam' is not a number"),
    ("ftp://host/x.mp4", "capture source ftp://host/x.mp4: unknown scheme ftp://"),
])
def test_missing_sources_fail_with_one_line(uri, says):
    with pytest.raises(InputError) as err:
        source(uri).open()
    assert str(err.value).startswith(says) and "\n" not in str(err.value)


def test_unreachable_streams_are_waited_for_with_one_line_naming_the_cause(free_port, caplog):
    """A camera that is not there yet is retried (never an error that ends capture): one line says why."""
    for uri, cause in ((f"rtsp://user:secret@127.0.0.1:{free_port}/cam", "connection refused"),
                       (f"http://127.0.0.1:{free_port}/stream.mjpg", "connection refused"),
                       ("rtsp://camera.invalid/live", "cannot resolve camera.invalid")):
        caplog.clear()
        stop = threading.Event()
        src = open_source(CaptureConfig(source=uri, reconnect_min_s=0.1, reconnect_max_s=0.2), stop)
        assert src.open().live
        threading.Timer(1.5, stop.set).start()
        assert src.read() is None  # retried until stopped
        lines = [r.getMessage() for r in caplog.records if r.name == "services.sources.network"]
        assert len(lines) == 1 and cause in lines[0] and "secret" not in lines[0], lines
        src.close()


def test_not_a_video_and_not_a_sequence(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(InputError, match="cannot decode it as a video"):
        source(str(tmp_path / "notes.txt")).open()
    with pytest.raises(InputError, match=r"not a video file or MOTChallenge sequence \(no img1/ folder\)"):
        source(str(tmp_path)).open()
    (tmp_path / "img1").mkdir()
    with pytest.raises(InputError, match="no \\*.jpg images"):
        source(str(tmp_path)).open()


def test_target_size_and_fit():
    assert target_size(352, 288, 0, 0) == (352, 288)
    assert target_size(352, 288, 640, 480) == (640, 480)
    assert target_size(1920, 1080, 640, 0) == (640, 360)
    assert target_size(1920, 1080, 0, 480) == (854, 480)
    image = np.zeros((288, 352, 3), np.uint8)
    assert fit(image, 352, 288) is image
    assert fit(image, 640, 480).shape == (480, 640, 3)


def test_redact_hides_passwords():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/h264") == "rtsp://admin:***@10.0.0.5:554/h264"
    assert redact("http://cam.local/mjpg") == "http://cam.local/mjpg"
