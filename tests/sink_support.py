"""Test harness for the sinks: a real ring and publisher around real sink subprocesses.

The test plays capture and tracker: it writes real face frames (OTB-FaceOcc1-A) into a
FrameRing, publishes Frame then Tracks messages through the conftest's real proxy, and
starts `python -m services.sink` as a subprocess on the same bus and ring.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.bus import Publisher, Subscriber
from common.frame_ring import FrameRing
from common.messages import Frame, Metrics, Track, Tracks
from models.dataset import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent
SEQ = DATA_DIR / "OTB-FaceOcc1-A"
N_IMAGES = 60
SLOTS = 16
_ids = itertools.count()


def load_sequence(n: int = N_IMAGES) -> tuple[list[np.ndarray], list[list[float]]]:
    """The first `n` frames and their gt head boxes as [x1, y1, x2, y2]."""
    images = [cv2.imread(str(p)) for p in sorted((SEQ / "img1").glob("*.jpg"))[:n]]
    boxes = []
    for line in (SEQ / "gt" / "gt.txt").read_text().splitlines()[:n]:
        _, _, x, y, w, h = (float(v) for v in line.split(",")[:6])
        boxes.append([x, y, x + w, y + h])
    return images, boxes


class SinkProcess:
    """One `python -m services.sink` subprocess; its log goes to a file."""

    def __init__(self, stack: "Stack", name: str, args: list[str]):
        self.log_path = stack.tmp / f"{name}.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "services.sink", *stack.overrides, *args]
        env = {**os.environ, "FACETRACK_LOG": "INFO", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, timeout: float = 15.0) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"sink never logged {pattern!r}; log:\n{self.log()}")

    def url(self) -> str:
        return self.wait_log(r"live view at (http://\S+/)").group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        finally:
            self._log.close()


class Stack:
    """The test's side of a stack: ring, publisher, a metrics subscriber, the frames sent."""

    def __init__(self, tmp: Path, publish: str, subscribe: str):
        self.tmp = tmp
        self.stack_id = f"sinktest{os.getpid()}x{next(_ids)}"
        self.images, self.gt = load_sequence()
        h, w = self.images[0].shape[:2]
        self.width, self.height = w, h
        self.ring = FrameRing.create(f"facetrack-{self.stack_id}", w, h, SLOTS, shm_dir=tmp)
        self.publisher = Publisher(publish, hwm=50)
        self.metrics = Subscriber(subscribe, [Metrics.TOPIC], hwm=1000)
        self.overrides = [f"--set=bus.publish={publish}", f"--set=bus.subscribe={subscribe}",
                          f"--set=stack.run_dir={tmp}", f"--set=stack.id={self.stack_id}",
                          f"--set=ring.shm_dir={tmp}", f"--set=ring.slots={SLOTS}",
                          "--set=monitor.interval_s=0.2"]
        self.next_id = 0
        self.sent: dict[int, tuple[Frame, Tracks]] = {}
        self.sinks: list[SinkProcess] = []
        self._metrics: dict[str, Metrics] = {}

    def sink(self, *args: str) -> SinkProcess:
        proc = SinkProcess(self, f"sink{len(self.sinks)}", list(args))
        self.sinks.append(proc)
        return proc

    def tracks_for(self, pos: int) -> list[Track]:
        """Track 1 on the gt head box; track 7, lost, in the top-left corner."""
        return [Track(id=1, box=self.gt[pos], score=0.9, state="confirmed", age=pos),
                Track(id=7, box=[10.0, 10.0, 60.0, 50.0], score=0.4, state="lost", age=3)]

    def publish(self, pos: int | None = None) -> int:
        """Write the next frame (source position `pos`, default: the sequence in a loop) into
        the ring, publish its Frame and Tracks; returns its id."""
        k = self.next_id
        self.next_id += 1
        pos = k % len(self.images) if pos is None else pos
        t = time.time()
        slot, seq = self.ring.write(k, t, self.images[pos])
        frame = Frame(stack=self.stack_id, frame_id=k, slot=slot, seq=seq, ring_id=self.ring.ring_id,
                      t_capture=t, width=self.width, height=self.height, source_pos=pos)
        tracks = Tracks(frame_id=k, t_capture=t, t_tracked=time.time(), tracks=self.tracks_for(pos))
        self.publisher.send(frame)
        self.publisher.send(tracks)
        self.sent[k] = (frame, tracks)
        return k

    def publish_until(self, done, timeout: float = 15.0, fps: float = 50.0) -> None:
        """Publish frames at `fps` until `done()` is true (slow-joiner safe start-up)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.publish()
            if done():
                return
            time.sleep(1 / fps)
        raise AssertionError(f"condition not met after {timeout} s; sink logs:\n" +
                             "\n".join(s.log() for s in self.sinks))

    def publish_n(self, n: int, fps: float = 50.0) -> None:
        for _ in range(n):
            self.publish()
            time.sleep(1 / fps)

    @contextlib.contextmanager
    def publishing(self, fps: float = 30.0, pos: int | None = None):
        """Publish at `fps` from a thread for the duration of the block (nothing else may publish)."""
        stop = threading.Event()

        def run():
            while not stop.wait(1 / fps):
                self.publish(pos)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def newest_metrics(self, service: str) -> Metrics | None:
        """The newest Metrics of `service` received so far, without waiting."""
        for msg in self.metrics.drain():
            if isinstance(msg, Metrics):
                self._metrics[msg.service] = msg
        return self._metrics.get(service)

    def wait_metrics(self, service: str, pred, timeout: float = 10.0) -> Metrics:
        """The first Metrics of `service` that satisfies `pred`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.metrics.recv(timeout_ms=200)
            if isinstance(msg, Metrics):
                self._metrics[msg.service] = msg
                if msg.service == service and pred(msg):
                    return msg
        raise AssertionError(f"no metrics from {service} matching the condition in {timeout} s; "
                             f"newest: {self._metrics.get(service)}")

    def close(self) -> None:
        for sink in self.sinks:
            sink.stop()
        self.publisher.close()
        self.metrics.close()
        self.ring.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes, str]:
    """(status, body, content type); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def get_json(url: str) -> dict | None:
    status, body, _ = http_get(url)
    return json.loads(body) if status == 200 else None


def colour_distance(pixels: np.ndarray, bgr) -> np.ndarray:
    """Euclidean distance of each BGR pixel to `bgr`."""
    return np.linalg.norm(pixels.reshape(-1, 3).astype(float) - np.asarray(bgr, float), axis=1)


def box_edge_pixels(image: np.ndarray, box) -> np.ndarray:
    """Pixels on the four edges of `box` (rounded), corners and label left out."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    xs = np.arange(x1 + 8, x2 - 8)
    ys = np.arange(y1 + 8, y2 - 8)
    return np.concatenate([image[y1, xs], image[y2, xs], image[ys, x1], image[ys, x2]])


@pytest.fixture
def stack(tmp_path, proxy):
    publish, subscribe = proxy
    s = Stack(tmp_path, publish, subscribe)
    yield s
    s.close()
