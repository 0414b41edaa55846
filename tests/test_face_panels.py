"""The live view's Faces / Recent / Health panels as data (face_library.py), without a browser.

Records of frames go in as the sink loop hands them over; what `state()` gives the page (and
/events pushes) must say who is here now and since when, move a track that left into Recent
with its first and last time, keep a name given after it left, keep only `sink.recent_faces`,
and sum the stack's metrics up: fps and p50 per stage, a silent stage as down, the watchdog's
restarts, the board's temperature where a stage reports it.
"""
from __future__ import annotations

import time
from pathlib import Path

from common.config import SinkConfig
from common.messages import Metrics
from common.prometheus import StackMetrics
from services.sinks.face_library import FaceLibrary
from services.sinks.view_http import VideoFeed


class Sent(list):
    def send(self, msg) -> None:
        self.append(msg)


def record(*tracks: tuple[int, str]) -> dict:
    return {"tracks": [{"id": tid, "name": name} for tid, name in tracks]}


def metrics(service: str, fps: float, p50: float, **extra: float) -> Metrics:
    return Metrics(service=service, pid=1, t=time.time(), frames_in=10, frames_out=10, fps=fps, p50_ms=p50, p99_ms=p50,
                   dropped=3, errors=0, cpu_percent=1.0, rss_bytes=1, extra=extra)


def library(recent: int = 2) -> FaceLibrary:
    cfg = SinkConfig(recent_faces=recent)
    return FaceLibrary(cfg, VideoFeed(cfg, StackMetrics(1.0, 3), b""), Path("/nonexistent/gallery.sqlite"), Sent(),
                       lambda tid: None)


def test_tracks_now_move_to_recent_when_they_leave_newest_first_and_bounded():
    lib = library(recent=2)
    lib.see(record((1, ""), (2, "")), 100.0)
    lib.see(record((1, "unknown"), (2, "Ada")), 101.0)
    state = lib.state()
    assert [(f["track_id"], f["name"], f["first"]) for f in state["faces"]] == [(1, "unknown", 100.0), (2, "Ada", 100.0)]
    assert state["recent"] == [] and state["faces"][0]["thumbnail"] == "/snapshots/1.jpg"
    lib.see(record((2, "Ada")), 104.5)  # 1 left after 101.0
    lib.named(1, "Bob")  # named on the page after it left
    lib.see(record(), 106.0)  # 2 left after 104.5
    lib.see(record((3, "")), 107.0)
    lib.see(record(), 108.0)  # 3 left: the oldest (1) falls out of a Recent of 2
    state = lib.state()
    assert state["faces"] == []
    assert [(f["track_id"], f["name"], f["first"], f["last"], f["duration_s"]) for f in state["recent"]] == \
        [(3, "", 107.0, 107.0, 0.0), (2, "Ada", 100.0, 104.5, 4.5)]
    lib2 = library(recent=4)
    lib2.see(record((1, "")), 1.0)
    lib2.see(record(), 2.0)
    lib2.named(1, "Bob")
    assert lib2.state()["recent"][0]["name"] == "Bob"


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
    assert h["restarts"] == 2 and h["board"] == {"temp_c": 61.5}
    assert "board" not in library().state()["health"] and "restarts" not in library().state()["health"]
