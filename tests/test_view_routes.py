"""The privacy view is an allow-list: it serves the video feed's routes and nothing the live view adds.

Both views run here in-process on loopback sockets. Every route of the live view's table
(GET and POST, patterns sampled) is asked of the privacy view: only the paths this test
lists as the privacy view's (an expectation written here, not read from the code) are
served, every other one is 404. A route added to the live view at run time (as a new
feature would be) is served there and is 404 on the privacy view. What the feed's routes
say reaches both views alike: a stage down makes /healthz 503 with "down", a silence
empties /tracks.json with "stale": true.
"""
from __future__ import annotations

import http.client
import json
import re
import time

import numpy as np
import pytest

from common.bus import Publisher
from common.config import HttpConfig, SinkConfig
from common.prometheus import StackMetrics
from services.sinks.live_view import LiveView
from services.sinks.privacy import PrivacyView
from services.sinks.view_http import Routes

PRIVACY_ALLOWS = {("GET", p) for p in ("/", "/index.html", "/stream.mjpg", "/snapshot.jpg", "/tracks.json",
                                       "/healthz", "/metrics")}
# One concrete path per pattern route of the live view; a new pattern needs its sample here.
SAMPLES = ("/snapshots/3fa2c1e0d4b59e07-1.jpg", "/people/1.jpg")


def status(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
        return conn.getresponse().status  # the head only: /stream.mjpg never ends
    finally:
        conn.close()


def concrete(method: str, path: str) -> str:
    """The path itself, or a sample of a pattern route."""
    if method == "POST" or not any(c in path for c in "\\(["):
        return path
    matches = [s for s in SAMPLES if re.fullmatch(path, s)]
    assert matches, f"no sample path in SAMPLES for the live view's pattern route {path!r}"
    return matches[0]


@pytest.fixture
def views(tmp_path, monkeypatch):
    """A live view with one route more than it has today, and a privacy view; both started."""
    added = Routes(get={"/added-feature": lambda req, _m: req.send(200, "text/plain", b"new\n")})
    original = LiveView.routes
    monkeypatch.setattr(LiveView, "routes", lambda self: original(self).add(added))
    cfg = SinkConfig(http_host="127.0.0.1")
    publisher = Publisher(f"ipc://{tmp_path}/pub.sock", 10)
    live = LiveView(cfg, 0, "routes", StackMetrics(1.0, 3), HttpConfig(), tmp_path / "snapshots",
                    tmp_path / "gallery.sqlite", publisher)
    privacy = PrivacyView(cfg, 0, "routes", StackMetrics(1.0, 3), HttpConfig())
    for view in (live, privacy):
        view.start()
    yield live, privacy
    for view in (live, privacy):
        view.close()
    publisher.close()


def test_the_privacy_view_serves_its_allow_list_and_nothing_the_live_view_adds(views):
    live, privacy = views
    assert set(privacy.routes().paths()) == PRIVACY_ALLOWS
    live_routes = live.routes().paths()
    assert ("GET", "/added-feature") in live_routes
    assert status(live.served.port, "GET", "/added-feature") == 200
    asked = 0
    for method, path in live_routes:
        if (method, path) in PRIVACY_ALLOWS:
            continue
        asked += 1
        assert status(privacy.served.port, method, concrete(method, path)) == 404, (method, path)
    assert asked >= 10  # the added route, the face snapshots and the face library's pages and changes
    for method, path in PRIVACY_ALLOWS:  # served (503 before the first frame is an answer too)
        assert status(privacy.served.port, method, path) != 404, path


def get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_stages_down_and_silence_reach_both_views_through_the_feed(views):
    live, _ = views
    live.library.see({"tracks": [{"id": 1, "name": ""}]}, 5, time.time())  # a face on the live page now
    for view in views:
        port = view.served.port
        view.feed.put(np.zeros((48, 64, 3), np.uint8), {"frame_id": 7, "tracks": [{"id": 1, "name": ""}]})
        code, body = get(port, "/healthz")
        assert code == 200 and body["ok"] is True and body["down"] == {}, (view.kind, body)
        view.on_down({"detector": "STOPPED"})  # as the sink loop calls it when the watchdog says so
        code, body = get(port, "/healthz")
        assert code == 503 and body["ok"] is False and body["down"] == {"detector": "STOPPED"}, (view.kind, body)
        view.on_down({})
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/tracks.json")[1]["tracks"] == [{"id": 1, "name": ""}]
        view.on_silence(6.0)
        assert get(port, "/tracks.json") == (200, {"frame_id": 7, "tracks": [], "stale": True}), view.kind
    faces = live.library.state()
    assert faces["faces"] == [] and [f["track_id"] for f in faces["recent"]] == [1]  # nobody is present any more
