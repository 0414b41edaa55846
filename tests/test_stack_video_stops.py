"""When the video stops, nobody is present any more: a real stack under supervisord, a real
mosquitto and a real RTSP camera (GStreamer) that starts after the stack and then goes away.

Home Assistant's occupancy sensor reads the retained faces state: if it kept saying
`present: true` after the camera died, the hall light would stay on for ever.
"""
from __future__ import annotations

import os

from facetrack.stack import Stack
from mqtt_support import Collector, Mosquitto, free_port
from services.sinks.mqtt_topics import faces_topic
from stack_support import get_json, wait_for
from stream_support import RtspCamera


def test_faces_are_gone_when_the_camera_stops(tmp_path, data_dir):
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
    tracks_url = f"http://127.0.0.1:{http_port}/tracks.json"
    try:
        with Stack(tmp_path / "run", overrides, autostart={"sink-mqtt": True}) as stack:
            stack.start(wait_for=("broker", "capture", "detector", "tracker", "sink", "sink-mqtt"))
            camera.start()
            wait_for(lambda: (collector.latest().get(faces) or {}).get("present"), timeout=180,
                     what="a face present on MQTT")
            wait_for(lambda: (get_json(tracks_url) or {}).get("tracks"), timeout=30, what="tracks on /tracks.json")

            camera.stop()
            wait_for(lambda: collector.latest().get(faces) == {"present": False, "count": 0, "name": "unknown"},
                     timeout=60, what="nobody present on MQTT after the camera stopped")
            ended = collector.select("/tracks/ended", stack_id)
            assert ended and all(e["reason"] == "no video" for e in ended), ended
            record = get_json(tracks_url)
            assert record is not None and record["tracks"] == [] and record["stale"] is True, record
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
