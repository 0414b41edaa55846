"""One notion of a run, tested with a real tracker restart.

A real tracker process follows one face (kind "none": the tracks are the detections) fed
through a real proxy and ring; it is killed and started again while capture goes on (frame ids
keep growing), and a second person is now in view. The new tracker numbers its track 1 again.
Each consumer, fed the Tracks stream exactly as published, must see two people: the MQTT
events end the first track (reason "restart") and start the second under another key, and the
snapshot book serves the second person's face under the new key, never the first's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import yaml

from common.bus import Publisher, Subscriber
from common.config import ROOT, SnapshotsConfig, load_config
from common.frame_ring import FrameRing
from common.messages import Detections, Frame, Tracks
from common.runs import track_key
from services.sinks.mqtt_events import TrackEvents
from services.sinks.snapshots import SnapshotBook
from stack_support import wait_for

FIRST, SECOND = [40.0, 40.0, 120.0, 120.0], [200.0, 100.0, 280.0, 180.0]  # two people, far apart


class Camera(threading.Thread):
    """Frames into the ring at ~30 fps with a detection of `self.box` on each (the detector's part)."""

    def __init__(self, publish: str, ring: FrameRing):
        super().__init__(daemon=True)
        self.pub, self.ring = Publisher(publish, hwm=100), ring
        self.box = FIRST
        self.frames: dict[int, tuple[Frame, np.ndarray]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        frame_id = 0
        while not self.stop.is_set():
            image = np.full((240, 320, 3), 90, np.uint8)
            x1, y1, x2, y2 = (int(v) for v in self.box)
            image[y1:y2, x1:x2] = (40, 160, 220) if self.box is FIRST else (200, 60, 30)
            slot, seq = self.ring.write(frame_id, time.time(), image)
            frame = Frame(stack="t", frame_id=frame_id, slot=slot, seq=seq, ring_id=self.ring.ring_id,
                          t_capture=time.time(), width=320, height=240, source_pos=frame_id)
            self.frames[frame_id] = (frame, image)
            self.pub.send(frame)
            self.pub.send(Detections(frame_id=frame_id, t_capture=frame.t_capture, t_in=time.time(), t_out=time.time(),
                                     boxes=[list(self.box)], scores=[0.9], keypoints=[], ring_id=self.ring.ring_id))
            frame_id += 1
            time.sleep(1 / 30)
        self.pub.close()


def test_a_restarted_tracker_is_a_new_run_for_every_consumer(tmp_path, proxy):
    publish, subscribe = proxy
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config["stack"].update(id=f"runs{os.getpid()}", run_dir=str(tmp_path))
    config["bus"].update(publish=publish, subscribe=subscribe)
    config["ring"].update(shm_dir=str(tmp_path))
    config["tracker"].update(kind="none")
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)
    published: list[Tracks] = []

    def tracker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "services.tracker", "--config", str(path)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def confirmed(run_ids) -> Tracks | None:
        while (msg := sub.recv(timeout_ms=20)) is not None:
            published.append(msg)
        return next((m for m in published if m.run_id not in run_ids and m.tracks
                     and m.tracks[0].state == "confirmed"), None)

    with FrameRing.create(cfg.ring_name, 320, 240, cfg.ring.slots, shm_dir=tmp_path) as ring:
        sub = Subscriber(subscribe, [Tracks.TOPIC], hwm=100000)
        camera = Camera(publish, ring)
        camera.start()
        proc = tracker()
        try:
            first = wait_for(lambda: confirmed(()), 60, what="the first person tracked")
            proc.kill()
            proc.wait(10)
            camera.box = SECOND  # someone else walks in while the tracker is down
            proc = tracker()
            second = wait_for(lambda: confirmed((0, first.run_id)), 60, what="the second person tracked")
        finally:
            proc.kill()
            proc.wait(10)
            camera.stop.set()
            camera.join(5)
            sub.close()
    assert first.run_id and second.run_id and second.run_id != first.run_id  # two runs, each named
    assert second.tracks[0].id == first.tracks[0].id == 1  # the id alone is the same: it must not join them
    assert second.frame_id > first.frame_id  # capture went on: frame ids alone show no restart

    events, book, snapshots = TrackEvents(), SnapshotBook(SnapshotsConfig(min_interval_s=0.0), tmp_path / "snap", "t"), {}
    happened = []
    for msg in published:
        frame, image = camera.frames[msg.frame_id]
        for snapshot in book.see(frame, msg, lambda image=image: image):
            snapshots[snapshot.key] = snapshot
        happened += [(kind, f["track"], f.get("reason")) for kind, f in events.tracks(msg, snapshot=book.get)]
    old, new = track_key(first.run_id, 1), track_key(second.run_id, 1)
    assert happened == [("started", old, None), ("ended", old, "restart"), ("started", new, None)]
    assert snapshots[old].box == tuple(FIRST) and snapshots[new].box == tuple(SECOND)
    assert book.get(new) is snapshots[new] and book.get(old) is snapshots[old]
