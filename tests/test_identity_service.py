"""The identity service as a real process, fed through a real proxy and a real frame ring.

Frames of OTB-FaceOcc1-A go into the ring at ~30 fps with their Frame messages; Tracks
carry one confirmed track on the gt box; Detections from the real detector (BlazeFace, and
YuNet: its 5 landmarks) arrive two frames late, every 3rd frame. The gallery file starts out broken (the service must keep
running, every face "unknown"), then a gallery enrolling the woman replaces it: the
service reloads it and names the live track without being restarted. Through it all the
track is embedded only a handful of times, not per frame or per detection. Then the gallery
is changed over the bus, as the live view's pages do (GalleryRequest -> GalleryReply): a
track never embedded and a bad name are refused in one line; the live track enrolled under
a new name is named so at once; renamed, then removed, it goes back to the file's own match.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import yaml

from common.bus import Publisher, Subscriber
from common.config import ROOT, load_config
from common.frame_ring import FrameRing
from common.gallery import Gallery
from common.messages import Detections, Frame, GalleryReply, GalleryRequest, Identity, Metrics, Track, Tracks
from models.build import build
from models.facerec.runtime import load_embedder
from models.runtime import load_detector

from identity_probes import DATA, otb_chips, otb_gt

SEQ = "OTB-FaceOcc1-A"
FRAMES = 90
TRACK_ID = 7
RUN = 0x5EED0000000000A1  # the tracker run the feeder's tracks belong to


class Feeder(threading.Thread):
    """Publishes frames, tracks and late detections in a loop until stopped."""

    def __init__(self, publish: str, ring: FrameRing, images, gt, found):
        super().__init__(daemon=True)
        self.pub = Publisher(publish, hwm=50)
        self.ring, self.images, self.gt, self.found = ring, images, gt, found
        self.stop = threading.Event()
        self.sent_detections = 0
        self.pub_requests: list = []  # sent from this thread: a ZeroMQ socket belongs to one

    def run(self) -> None:
        frame_id = 0
        while not self.stop.is_set():
            frame_id += 1
            i = (frame_id - 1) % FRAMES
            slot, seq = self.ring.write(frame_id, time.time(), self.images[i])
            h, w = self.images[i].shape[:2]
            self.pub.send(Frame(stack="t", frame_id=frame_id, slot=slot, seq=seq, ring_id=self.ring.ring_id,
                                t_capture=time.time(), width=w, height=h, source_pos=i))
            self.pub.send(Tracks(frame_id=frame_id, t_capture=0.0, t_tracked=time.time(), run_id=RUN,
                                 tracks=[Track(id=TRACK_ID, box=self.gt[i + 1].tolist(), score=1.0,
                                               state="confirmed", age=frame_id - 1)]))
            late = frame_id - 2
            if late > 0 and late % 3 == 0:
                j = (late - 1) % FRAMES
                f = self.found[j]
                self.pub.send(Detections(frame_id=late, t_capture=0.0, t_in=0.0, t_out=time.time(),
                                         boxes=f.boxes.tolist(), scores=f.scores.tolist(),
                                         keypoints=f.keypoints.tolist()))
                self.sent_detections += 1
            while self.pub_requests:
                self.pub.send(self.pub_requests.pop(0))
            time.sleep(1 / 30)
        self.pub.close()


def _wait_for(sub: Subscriber, predicate, timeout: float, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the identity service exited"
        msg = sub.recv(timeout_ms=200)
        if msg is None:
            continue
        seen.append(msg)
        if predicate(msg):
            return msg, seen
    pytest.fail(f"no matching message in {timeout} s; saw {[type(m).__name__ for m in seen][-10:]}")


@pytest.mark.parametrize("variant", ["full", "yunet"])  # BlazeFace's 6 keypoints, YuNet's 5 landmarks
def test_identity_service_names_a_track_after_the_gallery_is_fixed(tmp_path, proxy, variant):
    publish, subscribe = proxy
    stack_id = f"idt{os.getpid()}"
    gallery_path = tmp_path / "gallery.sqlite"
    gallery_path.write_bytes(b"this is not a gallery" * 50)
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config["stack"].update(id=stack_id, run_dir=str(tmp_path))
    config["bus"].update(publish=publish, subscribe=subscribe)
    config["identity"].update(gallery=str(gallery_path), reload_s=0.2, republish_s=0.5)
    config_path = tmp_path / "stack.yaml"
    config_path.write_text(yaml.safe_dump(config))
    cfg = load_config(config_path)

    images = [cv2.imread(str(DATA / SEQ / "img1" / f"{f:06d}.jpg")) for f in range(1, FRAMES + 1)]
    gt = otb_gt(SEQ)
    build([variant], ["llvm"])  # cached: instant when up to date
    detector = load_detector(variant, "tvm")
    found = [detector.detect(im) for im in images]
    h, w = images[0].shape[:2]
    log_path = tmp_path / "identity.log"
    with FrameRing.create(cfg.ring_name, w, h, cfg.ring.slots) as ring, open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "services.identity", "--config", str(config_path)],
                                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        sub = Subscriber(subscribe, [Identity.TOPIC, Metrics.TOPIC, GalleryReply.TOPIC], hwm=100)
        feeder = Feeder(publish, ring, images, gt, found)
        try:
            feeder.start()
            first, _ = _wait_for(sub, lambda m: isinstance(m, Identity), 60, proc)
            assert (first.track_id, first.name) == (TRACK_ID, "unknown")

            embedder = load_embedder(cfg.identity.backend)
            chips = otb_chips(SEQ, detector, (1, 50), cfg.identity.min_eye_px)
            good = tmp_path / "new.sqlite"
            with Gallery(good, create=True) as g:
                g.add("alice", embedder.embed(np.stack(list(chips.values()))), ["frame 1", "frame 50"])
            os.replace(good, gallery_path)
            named, _ = _wait_for(sub, lambda m: isinstance(m, Identity) and m.name == "alice", 30, proc)
            assert named.track_id == TRACK_ID and 0 <= named.distance <= cfg.identity.threshold

            metrics, _ = _wait_for(sub, lambda m: isinstance(m, Metrics) and m.service == "identity", 10, proc)
            embeds = metrics.extra["embeds"]
            print(f"\nidentity service: {feeder.sent_detections} detections sent, {embeds:.0f} embeddings, "
                  f"named {named.name} at distance {named.distance:.3f}")
            assert 1 <= embeds <= cfg.identity.max_embeds_per_track
            assert feeder.sent_detections >= 3 * embeds

            def ask(request_id: str, **fields) -> GalleryReply:
                feeder.pub_requests.append(GalleryRequest(request_id=request_id, **fields))
                reply, _ = _wait_for(sub, lambda m: isinstance(m, GalleryReply) and m.request_id == request_id, 30, proc)
                return reply

            reply = ask("r1", action="enrol", name="bob", track_id=99, run_id=RUN)
            assert not reply.ok and reply.detail.startswith(f"no face of track 99 of run {RUN:016x} was embedded"), reply
            # the same id of another tracker run (one that restarted) is another face: never enrolled as this one
            reply = ask("r1b", action="enrol", name="bob", track_id=TRACK_ID, run_id=RUN + 1)
            assert not reply.ok and reply.detail.startswith(f"no face of track {TRACK_ID} of run {RUN + 1:016x}"), reply
            reply = ask("r2", action="enrol", name="<bob>", track_id=TRACK_ID, run_id=RUN)
            assert not reply.ok and "not allowed" in reply.detail and "\n" not in reply.detail, reply
            reply = ask("r3", action="enrol", name=" Bob ", track_id=TRACK_ID, run_id=RUN, thumbnail=b"\xff\xd8jpeg")
            assert reply.ok and (reply.name, reply.faces) == ("Bob", 1), reply
            _wait_for(sub, lambda m: isinstance(m, Identity) and m.track_id == TRACK_ID and m.name == "Bob", 10, proc)
            reply = ask("r4", action="rename", name="Bob", new_name="Robert")
            assert reply.ok and reply.name == "Robert", reply
            _wait_for(sub, lambda m: isinstance(m, Identity) and m.name == "Robert", 10, proc)
            assert not ask("r5", action="remove", name="Bob").ok  # renamed: nobody is called that now
            reply = ask("r6", action="remove", name="Robert")
            assert reply.ok and reply.detail == "removed Robert: 1 face(s)", reply
            _wait_for(sub, lambda m: isinstance(m, Identity) and m.name == "alice", 10, proc)
            with Gallery(gallery_path) as g:
                assert [(e.name, e.faces) for e in g.entries()] == [("alice", 2)]
        finally:
            feeder.stop.set()
            feeder.join(timeout=5)
            sub.close()
            proc.terminate()
            rc = proc.wait(timeout=15)
    log = log_path.read_text()
    assert rc == 0, log[-3000:]
    assert "not a usable gallery" in log and "keeping the previous gallery" in log
    assert "Traceback" not in log, log[-3000:]


def test_faces_without_landmarks_leave_the_service_running_with_one_line(tmp_path, proxy):
    """A detector (here a remote one) that finds faces but no landmarks (keypoints of shape (N, 0, 2)): nothing to
    align a face by. The service must keep running, name no one, and say why once."""
    publish, subscribe = proxy
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config["stack"].update(id=f"idn{os.getpid()}", run_dir=str(tmp_path))
    config["bus"].update(publish=publish, subscribe=subscribe)
    config["detector"].update(remote="tcp://127.0.0.1:1")
    config["monitor"].update(interval_s=0.5)
    config_path = tmp_path / "stack.yaml"
    config_path.write_text(yaml.safe_dump(config))
    cfg = load_config(config_path)
    image = np.full((240, 320, 3), 128, np.uint8)
    box = [100.0, 60.0, 180.0, 160.0]
    log_path = tmp_path / "identity.log"
    with FrameRing.create(cfg.ring_name, 320, 240, cfg.ring.slots) as ring, open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "services.identity", "--config", str(config_path)],
                                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        sub = Subscriber(subscribe, [Identity.TOPIC, Metrics.TOPIC], hwm=1000)
        pub = Publisher(publish, hwm=50)
        try:
            def feed(frame_id: int) -> None:
                slot, seq = ring.write(frame_id, time.time(), image)
                pub.send(Frame(stack="t", frame_id=frame_id, slot=slot, seq=seq, ring_id=ring.ring_id,
                               t_capture=time.time(), width=320, height=240, source_pos=frame_id))
                pub.send(Tracks(frame_id=frame_id, t_capture=0.0, t_tracked=time.time(),
                                tracks=[Track(id=TRACK_ID, box=box, score=0.9, state="confirmed", age=frame_id)]))
                pub.send(Detections(frame_id=frame_id, t_capture=0.0, t_in=0.0, t_out=time.time(), boxes=[box],
                                    scores=[0.9], keypoints=np.zeros((1, 0, 2)).tolist()))

            deadline, frame_id, seen = time.monotonic() + 60, 0, []
            while not any(isinstance(m, Metrics) and m.service == "identity" and m.extra.get("no_landmarks", 0) >= 10
                          for m in seen):
                assert proc.poll() is None, "the identity service exited"
                assert time.monotonic() < deadline, f"no count of faces without landmarks; saw {seen[-5:]}"
                frame_id += 1
                feed(frame_id)
                while (msg := sub.recv(timeout_ms=30)) is not None:
                    seen.append(msg)
            assert not [m for m in seen if isinstance(m, Identity)]  # no face to align: no one named
        finally:
            sub.close()
            pub.close()
            proc.terminate()
            rc = proc.wait(timeout=15)
    log = log_path.read_text()
    assert rc == 0 and "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if "no landmarks" in line]
    assert len(lines) == 1 and "the remote detector at tcp://127.0.0.1:1" in lines[0], log[-3000:]
