"""Lifetimes in seconds at the source's own rate, learnt from the frames' t_capture.

`capture.fps` is 0 (the source's rate) and the source delivers 15 fps: a face that leaves must
end `max_lost_s` seconds of source time after its last detection (15 frames per second), not
at a guessed 30 fps (twice as late).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from common.bus import Publisher, Subscriber
from common.config import ROOT, load_config
from common.frame_ring import FrameRing
from common.messages import Detections, Frame, Metrics, Tracks
from common.tracking.rate import FrameRate
from stack_support import wait_for

SOURCE_FPS = 15.0
MAX_LOST_S = 1.0
SEEN = 45  # frames with the face detected; then it is gone
LATE = 3  # frames a detection may arrive after its own


def test_rate_is_the_median_period_so_skips_jitter_and_a_stall_do_not_move_it():
    rate = FrameRate(prior=30.0)
    assert rate.fps == 30.0  # nothing seen: the prior
    rng = random.Random(1)
    frame_ids = [i for i in range(200) if i % 7 != 3]  # frames the reader skipped
    t = {i: 100.0 + i / SOURCE_FPS + rng.uniform(-0.01, 0.01) for i in range(200)}  # jittery stamps
    for i in range(120, 200):
        t[i] += 5.0  # the camera stalled 5 s (reconnected) before frame 120
    for i in frame_ids:
        rate.see(i, t[i])
    assert rate.fps == pytest.approx(SOURCE_FPS, rel=0.03)
    rate.reset()
    assert rate.fps == 30.0


class Source(threading.Thread):
    """Frames at ~15 fps into the ring, stamped at 15 fps, with the face detected on the first SEEN."""

    def __init__(self, publish: str, ring: FrameRing):
        super().__init__(daemon=True)
        self.pub, self.ring = Publisher(publish, hwm=100), ring
        self.stop = threading.Event()

    def run(self) -> None:
        image, t0 = np.full((240, 320, 3), 90, np.uint8), time.time()
        frame_id = 0
        while not self.stop.is_set():
            t_capture = t0 + frame_id / SOURCE_FPS
            slot, seq = self.ring.write(frame_id, t_capture, image)
            self.pub.send(Frame(stack="t", frame_id=frame_id, slot=slot, seq=seq, ring_id=self.ring.ring_id,
                                t_capture=t_capture, width=320, height=240, source_pos=frame_id))
            if frame_id < SEEN:
                self.pub.send(Detections(frame_id=frame_id, t_capture=t_capture, t_in=time.time(), t_out=time.time(),
                                         boxes=[[100.0, 60.0, 180.0, 140.0]], scores=[0.9], keypoints=[],
                                         ring_id=self.ring.ring_id))
            frame_id += 1
            time.sleep(max(0.0, t0 + frame_id / SOURCE_FPS - time.time()))
        self.pub.close()


def test_a_face_that_left_ends_max_lost_s_after_at_the_sources_rate(tmp_path, proxy):
    publish, subscribe = proxy
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config["stack"].update(id=f"rate{os.getpid()}", run_dir=str(tmp_path))
    config["bus"].update(publish=publish, subscribe=subscribe)
    config["ring"].update(shm_dir=str(tmp_path))
    config["capture"].update(fps=0.0)  # the source's own rate: only the frames tell it
    config["tracker"].update(kind="none", max_lost_s=MAX_LOST_S)
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)
    last_seen = SEEN - 1
    # the first frame it must be gone on: max_lost_s after the frame its last detection was applied
    # on, which is that detection's frame or, as it arrives late, one of the next few (LATE)
    ends_by = last_seen + round(MAX_LOST_S * SOURCE_FPS) + 1 + LATE
    published: dict[int, Tracks] = {}
    with FrameRing.create(cfg.ring_name, 320, 240, cfg.ring.slots, shm_dir=tmp_path) as ring:
        sub = Subscriber(subscribe, [Tracks.TOPIC], hwm=100000)
        proc = subprocess.Popen([sys.executable, "-m", "services.tracker", "--config", str(path)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics = Subscriber(subscribe, [Metrics.TOPIC], hwm=1000)
        wait_for(lambda: (m := metrics.recv(timeout_ms=50)) is not None and m.service == "tracker", 60,
                 what="the tracker running")  # its loop turns: the frames from here on reach it
        metrics.close()
        source = Source(publish, ring)
        source.start()

        def until(frame_id: int) -> bool:
            while (msg := sub.recv(timeout_ms=20)) is not None:
                published[msg.frame_id] = msg
            return max(published, default=-1) >= frame_id

        try:
            wait_for(lambda: until(last_seen + 2 * round(MAX_LOST_S * SOURCE_FPS) + 5), 120, what="frames tracked")
        finally:
            source.stop.set()
            source.join(5)
            proc.kill()
            proc.wait(10)
            sub.close()
    tracked = {k for k, msg in published.items() if msg.tracks}
    assert last_seen in tracked  # the face was followed while detected
    # gone from the first frame past max_lost_s at 15 fps, not kept till 2 x later as at a guessed 30 fps
    after = sorted(k for k in published if ends_by <= k < last_seen + 2 * round(MAX_LOST_S * SOURCE_FPS))
    assert after and not tracked.intersection(after), (sorted(tracked)[-5:], after[:5])
    before = [k for k in published if last_seen < k <= last_seen + round(MAX_LOST_S * SOURCE_FPS)]
    assert before and set(before) <= tracked  # and not ended early either
