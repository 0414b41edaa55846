"""CURVE on the remote-detector link, with real processes: a board under supervisord, a remote detector.

The board's detector program is the frame forwarder with a CURVE key and a directory of
authorized detector keys; `services.remote_detector` runs as its own process, reached through a
TCP relay that records every byte the board sends it. Checked: a key not in the directory gets
no frame and is logged once on the board however often it retries; put in the directory, the
same detector gets frames and its detections reach the board's bus; taken out, its messages are
dropped; a client with another unknown key, without CURVE at all, or with a wrong board key gets
nothing; the bytes on the wire hold no JPEG header. And the refusals at start: a non-loopback
endpoint without keys, a secret key readable by others.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from common.bus import Subscriber
from common.config import ROOT
from common.curve import create_keys
from common.messages import Detections, EncodedFrame, Frame, FrameRequest, decode, encode
from facetrack.stack import Stack
from mqtt_support import free_port as another_port
from stack_support import MetricsWatch, wait_for

JFIF = b"\xff\xd8\xff\xe0\x00\x10JFIF"  # what every frame OpenCV encodes starts with


class Relay:
    """A TCP relay on loopback to `port`, keeping every byte the server sent back (one client at a time)."""

    def __init__(self, port: int):
        self.target = port
        self.downstream = bytearray()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.downstream), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if keep is not None:
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.server.close()


def dealer(endpoint: str, keys: tuple[bytes, bytes] | None = None, board: bytes | None = None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    if keys:
        sock.curve_publickey, sock.curve_secretkey = keys
        sock.curve_serverkey = board
    sock.connect(endpoint)
    return sock


def frames_within(socks: list[zmq.Socket], seconds: float) -> int:
    """EncodedFrames the sockets got while asking for frames every 0.5 s for `seconds`."""
    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for sock in socks:
            try:
                sock.send_multipart(encode(FrameRequest(detector="intruder", t=time.time())), zmq.NOBLOCK)
            except zmq.Again:
                pass  # no connection (the handshake failed): the request has nowhere to go
        for sock in socks:
            while sock.poll(0):
                got += isinstance(decode(sock.recv_multipart()), EncodedFrame)
        time.sleep(0.5)
    return got


def refusals(log: str, key: bytes) -> list[str]:
    return [line for line in log.splitlines() if "refused a remote detector" in line and key.decode() in line]


@pytest.fixture
def keys(tmp_path):
    """board, gpu1 (the detector) and stranger key pairs; an authorized directory, empty at first."""
    made = {name: create_keys(tmp_path / "keys", name) for name in ("board", "gpu1", "stranger")}
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    return made, authorized


def test_only_authorized_keys_get_frames_and_the_wire_is_encrypted(tmp_path, keys, free_port):
    made, authorized = keys
    board_pub, board_secret = made["board"]
    stranger = zmq.auth.load_certificate(made["stranger"][1])
    endpoint = f"tcp://127.0.0.1:{free_port}"
    overrides = {
        "stack": {"id": f"curve{os.getpid()}"},
        "capture": {"source": "faces://1", "fps": 10},
        "sink": {"http_port": another_port()},
        "monitor": {"interval_s": 0.5},
        "detector": {"remote": endpoint, "remote_key": str(board_secret), "remote_authorized_dir": str(authorized)},
    }
    relay = Relay(free_port)
    log_path = tmp_path / "remote-detector.log"
    with Stack(tmp_path / "board", overrides, autostart={"tracker": False, "sink": False, "watchdog": False}) as stack, \
            open(log_path, "w") as log:
        stack.start(wait_for=("broker", "capture", "detector"))
        stack.wait_log("detector", "forwarding JPEG frames")
        assert "CURVE" in stack.log("detector")
        remote = subprocess.Popen(
            [sys.executable, "-m", "services.remote_detector", "--connect", f"tcp://127.0.0.1:{relay.port}",
             "--set=monitor.interval_s=0.5", f"--set=detector.remote_key={made['gpu1'][1]}",
             f"--set=detector.remote_board_key={board_pub}"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "FACETRACK_CONFIG": str(ROOT / "configs" / "default.yaml")})
        watch = MetricsWatch(stack)
        detections = Subscriber(stack.config.bus.subscribe, [Detections.TOPIC], hwm=10000)
        try:
            # While the detector loads its model: an unknown key (twice, as a reconnecting client
            # would), a client without CURVE and one with a wrong board key ask for frames and get none.
            board_key = zmq.auth.load_certificate(board_pub)[0]
            wrong_board = zmq.curve_keypair()[0]
            intruders = [dealer(endpoint, stranger, board_key), dealer(endpoint), dealer(endpoint, stranger, board_key),
                         dealer(endpoint, stranger, wrong_board)]
            assert frames_within(intruders, 4.0) == 0
            for sock in intruders:
                sock.close(0)
            watch.wait("forwarder", lambda m: m.extra["remote_denied"] >= 2 and m.extra["remote_handshake_failed"] >= 1)
            assert len(refusals(stack.log("detector"), stranger[0])) == 1, stack.log("detector")[-3000:]

            # The real detector, not listed yet: refused, and asks again every RETRY_S; one line on the board.
            gpu1 = zmq.auth.load_certificate(made["gpu1"][0])[0]
            wait_for(lambda: "refused this detector's key" in log_path.read_text() and remote.poll() is None,
                     90, what="the remote detector refused")
            watch.wait("forwarder", lambda m: m.extra["remote_denied"] >= 4, timeout=30)  # 2 of its own at least
            assert watch.get("forwarder").extra["forwarded"] == 0
            assert len(refusals(stack.log("detector"), gpu1)) == 1, stack.log("detector")[-3000:]
            assert log_path.read_text().count("refused this detector's key") == 1, log_path.read_text()

            # Listed: the directory is reloaded, the detector's next try gets frames and its detections come back.
            shutil.copy(made["gpu1"][0], authorized / "gpu1.key")
            found = wait_for(lambda: [d for d in detections.drain() if isinstance(d, Detections) and d.boxes],
                             60, what="detections of the remote detector with a face")
            assert all(0 <= box[0] < box[2] <= 640 for d in found for box in d.boxes)
            forwarder = watch.wait("forwarder", lambda m: m.extra["forwarded"] > 3 and m.extra["detections_relayed"] > 3)
            assert watch.wait("detector", lambda m: m.extra.get("remote") == 1).frames_in > 0
            assert "serving 1 remote detector key(s)" in stack.log("detector")

            # Taken out: its messages are dropped (no more detections relayed), logged once.
            (authorized / "gpu1.key").unlink()
            wait_for(lambda: "is no longer in" in stack.log("detector"), 20, what="the revocation logged")
            mark = time.time() + 1.0  # what was in flight has arrived by then
            before = watch.wait("forwarder", lambda m: m.t > mark).extra["detections_relayed"]
            after = watch.wait("forwarder", lambda m: m.t > mark + 3).extra["detections_relayed"]
            assert after == before, (before, after)
            assert stack.log("detector").count("is no longer in") == 1
        finally:
            detections.close()
            watch.close()
            remote.terminate()
            remote.wait(10)
            relay.close()
    wire = bytes(relay.downstream)
    assert len(wire) > forwarder.extra["jpeg_bytes"] > 0  # every forwarded frame crossed the relay...
    assert JFIF not in wire  # ... and none as a plain JPEG (the check itself: see the next test)


def test_a_forwarded_frame_is_a_jfif_jpeg():
    """The wire check above looks for the right bytes: a forwarded frame in the clear starts with them."""
    from services.frame_forwarder import encode_frame

    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frame = Frame(stack="s", frame_id=1, slot=0, seq=2, ring_id=1, t_capture=0.0, width=64, height=48,
                  source_pos=0, fmt="bgr24")
    assert encode_frame(image, frame, 85, 0).jpeg.startswith(JFIF)


def run_module(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "FACETRACK_CONFIG": str(ROOT / "configs" / "default.yaml")})


def error_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stderr.splitlines() if " ERROR " in line]


@pytest.mark.parametrize("module, args", [
    ("services.detector", ["--set=detector.remote=tcp://0.0.0.0:{port}"]),
    ("services.remote_detector", ["--connect", "tcp://192.0.2.1:{port}"]),
])
def test_plain_beyond_loopback_refuses_to_start(module, args, free_port):
    out = run_module(module, *[a.format(port=free_port) for a in args])
    assert out.returncode == 3, out.stderr
    (line,) = error_lines(out)
    assert "detector.remote_key is empty" in line and "facetrack keys new" in line and "remote_insecure" in line


def test_a_secret_key_readable_by_others_is_refused(tmp_path, keys, free_port):
    made, authorized = keys
    secret = made["board"][1]
    secret.chmod(0o644)
    out = run_module("services.detector", f"--set=detector.remote=tcp://0.0.0.0:{free_port}",
                      f"--set=detector.remote_key={secret}", f"--set=detector.remote_authorized_dir={authorized}")
    assert out.returncode == 3, out.stderr
    (line,) = error_lines(out)
    assert "readable by others (mode 0644)" in line and f"chmod 600 {secret}" in line


def test_keys_command_makes_private_keys_and_never_overwrites(tmp_path):
    directory = tmp_path / "new" / "keys"
    cmd = [sys.executable, "-m", "facetrack.cli", "keys", "new", "board", "--dir", str(directory)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    assert modes == {"board.key": 0o644, "board.key_secret": 0o600}
    assert directory.stat().st_mode & 0o777 == 0o700
    public, secret = zmq.auth.load_certificate(directory / "board.key_secret")
    assert secret and zmq.auth.load_certificate(directory / "board.key") == (public, None)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr
    assert zmq.auth.load_certificate(directory / "board.key_secret")[1] == secret
    listed = subprocess.run([sys.executable, "-m", "facetrack.cli", "keys", "list", str(directory)], cwd=ROOT,
                            capture_output=True, text=True)
    assert listed.stdout.strip() == f"board.key\t{public.decode()}"
