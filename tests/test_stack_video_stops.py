"""When a stage or the video stops, the stack says so: a real stack under supervisord, a real
mosquitto and a real RTSP camera (GStreamer) that starts after the stack and then goes away.

A stage that should run and does not (here: stopped with supervisorctl) is down in the MQTT
status (Home Assistant's "stages down" problem sensor reads it), in the live view's /healthz,
in `facetrack monitor` and in the watchdog's log. When the camera stops, nobody is present:
Home Assistant's occupancy sensor reads the retained faces state, and if it kept saying
`present: true` after the camera died, the hall light would stay on for ever.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

from common.config import ROOT
from facetrack.stack import Stack
from mqtt_support import Collector, Mosquitto, free_port
from services.sinks.mqtt_topics import faces_topic, status_topic
from stack_support import get_json, wait_for
from stream_support import RtspCamera


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def monitor_table(stack: Stack) -> str:
    out = subprocess.run([sys.executable, "-m", "facetrack.cli", "monitor", "--seconds", "4"], cwd=ROOT, env=stack.env,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.rpartition("\x1b[2J")[2]  # the last table drawn


def test_stages_down_and_faces_gone_when_the_camera_stops(tmp_path, data_dir):
    images = sorted((data_dir / "OTB-FaceOcc1-A" / "img1").glob("*.jpg"))[:30]
    camera = RtspCamera(free_port(), images)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    http_port = free_port()
    stack_id = f"gone{os.getpid()}"
    overrides = {"stack": {"id": stack_id},
                 "capture": {"source": camera.url, "width": 0, "height": 0, "reconnect_max_s": 1.0},
                 "sink": {"http_port": http_port}, "mqtt": {"port": broker.port}}
    collector = Collector(broker.port, f"facetrack/{stack_id}/#")
    faces = faces_topic("facetrack", stack_id)
    status = status_topic("facetrack", stack_id)
    tracks_url = f"http://127.0.0.1:{http_port}/tracks.json"
    try:
        with Stack(tmp_path / "run", overrides, autostart={"sink-mqtt": True}) as stack:
            stack.start(wait_for=("broker", "capture", "detector", "tracker", "sink", "sink-mqtt"))
            camera.start()
            wait_for(lambda: (collector.latest().get(faces) or {}).get("present"), timeout=180,
                     what="a face present on MQTT")
            wait_for(lambda: (get_json(tracks_url) or {}).get("tracks"), timeout=30, what="tracks on /tracks.json")
            wait_for(lambda: healthz(http_port)[0] == 200, timeout=30, what="/healthz ok")

            # A stage stops (the detector): every place that shows the stack's health says so.
            stack.ctl("stop", "detector", check=True)
            collector.wait(lambda: (collector.latest().get(status) or {}).get("down") == {"detector": "STOPPED"},
                           timeout=30, what="the detector down in the retained status")
            assert collector.latest()[status]["state"] == "online"  # the sink itself is connected
            code, body = healthz(http_port)
            assert code == 503 and body["ok"] is False and body["down"] == {"detector": "STOPPED"}, body
            table = monitor_table(stack)
            assert any(line.split()[:1] == ["detector"] and line.endswith("DOWN (STOPPED)")
                       for line in table.splitlines()), table
            assert "down: detector (STOPPED)" in table, table
            assert "stage detector is down: STOPPED" in stack.log("watchdog")
            stack.ctl("start", "detector", check=True)
            collector.wait(lambda: collector.latest()[status].get("down") == {}, timeout=60,
                           what="nothing down once the detector runs again")
            wait_for(lambda: healthz(http_port)[0] == 200, timeout=30, what="/healthz ok again")

            # (without detections the tracker may have ended the track meanwhile: a face again first)
            wait_for(lambda: (collector.latest().get(faces) or {}).get("present"), timeout=60,
                     what="a face present again with the detector back")
            ended_before = len(collector.select("/tracks/ended", stack_id))
            camera.stop()
            wait_for(lambda: collector.latest().get(faces) == {"present": False, "count": 0, "name": "unknown"},
                     timeout=60, what="nobody present on MQTT after the camera stopped")
            ended = collector.select("/tracks/ended", stack_id)[ended_before:]
            assert ended and all(e["reason"] == "no video" for e in ended), [(e["track"], e["reason"]) for e in ended]
            started = [e["track"] for e in collector.select("/tracks/started", stack_id)]
            assert len(started) == len(set(started)), started  # no track started twice (events' hysteresis)
            # the live view is another sink process, with its own clock: waited for the same way
            record = wait_for(lambda: (get_json(tracks_url) or {}).get("stale") and get_json(tracks_url), timeout=30,
                              what="no tracks on /tracks.json after the camera stopped")
            assert record["tracks"] == [], record
            stack.ctl("stop", "capture", check=True)
            collector.wait(lambda: collector.latest()[status].get("down") == {"capture": "STOPPED"}, timeout=30,
                           what="capture down in the retained status")
        # What a client that connects now (Home Assistant after a restart) is told: nobody.
        late = Collector(broker.port, faces, persistent=False)
        try:
            late.wait(lambda: late.latest().get(faces) is not None, what="the retained faces state")
            assert late.latest()[faces]["present"] is False
        finally:
            late.close()
    finally:
        camera.stop()
        collector.close()
        broker.stop()
