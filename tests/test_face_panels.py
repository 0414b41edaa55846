"""The live view's Faces / Recent / Health panels as data (face_library.py), without a browser.

Records of frames go in as the sink loop hands them over; what `state()` gives the page (and
/events pushes) must say who is here now and since when, move a track that left into Recent
with its first and last time, keep a name given after it left, keep only `sink.recent_faces`,
name every face by its track key (a restarted tracker's reused id is another face), and sum the stack's metrics up: fps and p50 per stage, a silent stage as down, the watchdog's
restarts, the board's temperature where a stage reports it, the stages the watchdog says are down.

Naming a face over HTTP (the page's POST, on a loopback server here) becomes the
GalleryRequest for that track's tracker run and id; a bare id names no run and is refused.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

from common.config import HttpConfig, SinkConfig
from common.messages import GalleryReply, Metrics
from common.prometheus import StackMetrics
from common.runs import track_key
from services.sinks.face_library import FaceLibrary
from services.sinks.view_http import ServedView, VideoFeed


RUN, NEXT_RUN = 0x3FA2C1E0D4B59E07, 0x11  # two tracker runs


class Sent(list):
    def send(self, msg) -> None:
        self.append(msg)


def record(*tracks: tuple[int, str]) -> dict:
    return {"tracks": [{"id": tid, "name": name} for tid, name in tracks]}


def metrics(service: str, fps: float, p50: float, **extra: float) -> Metrics:
    return Metrics(service=service, pid=1, t=time.time(), frames_in=10, frames_out=10, fps=fps, p50_ms=p50, p99_ms=p50,
                   dropped=3, errors=0, cpu_percent=1.0, rss_bytes=1, extra=extra)


def library(recent: int = 2, snapshot_of=lambda key: None) -> FaceLibrary:
    cfg = SinkConfig(recent_faces=recent, gallery_timeout_s=30.0)
    return FaceLibrary(cfg, VideoFeed(cfg, StackMetrics(1.0, 3), b""), Path("/nonexistent/gallery.sqlite"), Sent(),
                       snapshot_of)


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def test_tracks_now_move_to_recent_when_they_leave_newest_first_and_bounded():
    lib = library(recent=2)
    lib.see(record((1, ""), (2, "")), RUN, 100.0)
    lib.see(record((1, "unknown"), (2, "Ada")), RUN, 101.0)
    state = lib.state()
    assert [(f["track_id"], f["name"], f["first"]) for f in state["faces"]] == [(1, "unknown", 100.0), (2, "Ada", 100.0)]
    assert state["recent"] == [] and state["faces"][0]["thumbnail"] == f"/snapshots/{track_key(RUN, 1)}.jpg"
    lib.see(record((2, "Ada")), RUN, 104.5)  # 1 left after 101.0
    lib.named(RUN, 1, "Bob")  # named on the page after it left
    lib.see(record(), RUN, 106.0)  # 2 left after 104.5
    lib.see(record((3, "")), RUN, 107.0)
    lib.see(record(), RUN, 108.0)  # 3 left: the oldest (1) falls out of a Recent of 2
    state = lib.state()
    assert state["faces"] == []
    assert [(f["track_id"], f["name"], f["first"], f["last"], f["duration_s"]) for f in state["recent"]] == \
        [(3, "", 107.0, 107.0, 0.0), (2, "Ada", 100.0, 104.5, 4.5)]
    lib2 = library(recent=4)
    lib2.see(record((1, "")), RUN, 1.0)
    lib2.see(record(), RUN, 2.0)
    lib2.named(RUN, 1, "Bob")
    assert lib2.state()["recent"][0]["name"] == "Bob"



def test_a_new_tracker_run_moves_its_faces_to_recent_and_a_reused_id_is_another_face():
    lib = library(recent=4)
    lib.see(record((1, "Ada")), RUN, 10.0)
    lib.see(record((1, "")), NEXT_RUN, 11.0)  # the tracker restarted: its track 1 is someone else
    state = lib.state()
    assert [(f["track"], f["name"], f["first"]) for f in state["faces"]] == [(track_key(NEXT_RUN, 1), "", 11.0)]
    assert [(f["track"], f["name"]) for f in state["recent"]] == [(track_key(RUN, 1), "Ada")]
    lib.named(NEXT_RUN, 1, "Bob")  # names the new run's track 1, which is not in Recent
    assert [f["name"] for f in lib.state()["recent"]] == ["Ada"]
    lib.named(RUN, 1, "Eve")
    assert [f["name"] for f in lib.state()["recent"]] == ["Eve"]

def test_health_sums_up_every_stage_restarts_and_the_board():
    lib = library()
    table = lib.feed.metrics_table
    table.update(metrics("detector", 12.26, 40.04, temp_c=61.5))
    table.update(metrics("capture", 30.0, 2.0, temp_c=58.0))
    table.update(metrics("watchdog", 1.0, 1.0, restarts=2))
    table.update(metrics("tracker", 30.0, 0.3))
    table.received["tracker"] = time.time() - 60  # silent for a minute: down
    h = lib.state()["health"]
    assert [(s["service"], s["fps"], s["p50_ms"], s["dropped"], s["up"]) for s in h["stages"]] == [
        ("capture", 30.0, 2.0, 3, True), ("detector", 12.3, 40.0, 3, True), ("tracker", 30.0, 0.3, 3, False),
        ("watchdog", 1.0, 1.0, 3, True)]
    assert h["restarts"] == 2 and h["board"] == {"temp_c": 61.5} and h["down"] == {}
    assert "board" not in library().state()["health"] and "restarts" not in library().state()["health"]
    lib.feed.set_down({"detector": "FATAL"})  # the watchdog's stages down (the view's on_down)
    assert lib.state()["health"]["down"] == {"detector": "FATAL"}



def test_naming_a_face_asks_for_that_tracker_runs_track_and_a_bare_id_is_refused():
    key = track_key(RUN, 3)
    lib = library(snapshot_of=lambda k: b"\xff\xd8" + k.encode())
    served = ServedView("faces test", "127.0.0.1", 0, HttpConfig(), 30.0)
    served.start(lib.routes())
    try:
        assert post(served.port, "/faces/name", {"track_id": 3, "name": "Ada"})[0] == 400
        assert post(served.port, "/faces/name", {"track": "3", "name": "Ada"})[0] == 400
        answers: list = []
        asking = threading.Thread(target=lambda: answers.append(post(served.port, "/faces/name",
                                                                     {"track": key, "name": "Ada"})))
        asking.start()
        deadline = time.monotonic() + 60
        while not lib.publisher and time.monotonic() < deadline:  # the sink loop's tick, as it sends
            lib.send_requests()
            time.sleep(0.01)
        [request] = lib.publisher
        assert (request.action, request.run_id, request.track_id, request.name) == ("enrol", RUN, 3, "Ada")
        assert request.thumbnail == b"\xff\xd8" + key.encode()  # that track's snapshot
        lib.on_reply(GalleryReply(request_id=request.request_id, ok=True, detail="enrolled", name="Ada", faces=1))
        asking.join(60)
        assert answers == [(200, {"ok": True, "detail": "enrolled", "name": "Ada", "faces": 1})]
    finally:
        served.close()
