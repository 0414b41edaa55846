"""Home Assistant MQTT discovery from the mqtt sink, against a real mosquitto.

The payloads are checked against what HA's MQTT docs require of each component (state_topic for
binary_sensor and sensor, image_topic or url_topic for image; unique_id, device, availability on
our status topic). The sink is the real subprocess of tests/sink_support.py, fed Tracks and
Identity messages by the test; a real MQTT client plays Home Assistant (birth message included).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jinja2
import paho.mqtt.client as mqtt
import pytest

from common.config import DEFAULT_CONFIG, ROOT, load_config
from common.messages import Identity, Track
from facetrack.stack import Stack
from models.runtime import load_detector
from mqtt_support import Collector, Mosquitto, free_port
from services.sinks import home_assistant as ha
from services.sinks.mqtt_events import faces_topic, snapshot_topic, status_topic
from test_mqtt_events import mqtt_sink
from test_snapshots import faces_in

REQUIRED = {"binary_sensor": ["state_topic"], "sensor": ["state_topic"], "image": []}  # HA docs, per component


def check_config(topic: str, payload: dict, cfg) -> None:
    prefix, component, node, object_id, last = topic.split("/")
    assert (prefix, node, last) == ("homeassistant", ha.node_id(cfg), "config") and component in REQUIRED
    for key in ["name", "unique_id", "default_entity_id", "device", "availability", *REQUIRED[component]]:
        assert key in payload, (topic, key)
    if component == "image":
        assert ("image_topic" in payload) != ("url_topic" in payload), topic  # exactly one of them
    assert payload["unique_id"] == f"{node}_{object_id}"
    assert payload["default_entity_id"] == f"{component}.{node}_{object_id}"
    assert payload["device"]["identifiers"] == [node] and payload["device"]["sw_version"] == ha.version()
    assert payload["availability"] == [{"topic": status_topic("facetrack", cfg.stack.id),
                                         "value_template": "{{ value_json.state }}",
                                         "payload_available": "online", "payload_not_available": "offline"}]


NODE = "homeassistant/{}/facetrack_door_1/{}/config"
FIXED = {NODE.format(c, o) for c, o in (("binary_sensor", "face_present"), ("sensor", "face_count"),
                                        ("sensor", "last_name"), ("binary_sensor", "stages_down"),
                                        ("image", "snapshot"))}


def ha_template(template: str, payload: dict) -> str:
    """What Home Assistant makes of `value_json` through a value template (Jinja2, as HA renders it)."""
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    return env.from_string(template).render(value_json=payload)


def test_payloads_follow_the_discovery_convention():
    cfg = load_config(DEFAULT_CONFIG, ["stack.id=Door-1"])
    assert ha.node_id(cfg) == "facetrack_door_1"  # {stack_id} expanded, then made an HA slug
    assert set(ha.entity_configs(cfg)) == FIXED
    configs = {**ha.entity_configs(cfg), **ha.stage_configs(cfg, "sink-mqtt"), **ha.stage_configs(cfg, "tracker")}
    assert set(configs) == FIXED | {NODE.format("sensor", f"{s}_{m}") for s in ("sink_mqtt", "tracker")
                                    for m in ("fps", "p50_ms")}
    for topic, payload in configs.items():
        check_config(topic, payload, cfg)
    assert len({p["unique_id"] for p in configs.values()}) == len(configs)
    present = configs[NODE.format("binary_sensor", "face_present")]
    assert present["device_class"] == "occupancy" and present["state_topic"] == "facetrack/Door-1/faces"
    assert [ha_template(present["value_template"], {"present": p, "count": int(p), "name": "unknown"})
            for p in (True, False)] == ["ON", "OFF"]
    down = configs[NODE.format("binary_sensor", "stages_down")]
    assert down["device_class"] == "problem" and down["state_topic"] == down["json_attributes_topic"] == \
        "facetrack/Door-1/status"
    status = {"state": "online", "down": {"capture": "STOPPED"}}
    assert ha_template(down["value_template"], status) == "ON"
    assert json.loads(ha_template(down["json_attributes_template"], status)) == {"capture": "STOPPED"}
    assert ha_template(down["value_template"], {"state": "online", "down": {}}) == "OFF"
    image = configs[NODE.format("image", "snapshot")]
    assert (image["image_topic"], image["content_type"]) == ("facetrack/Door-1/snapshot", "image/jpeg")
    fps = configs[NODE.format("sensor", "sink_mqtt_fps")]
    assert fps["entity_category"] == "diagnostic" and fps["state_topic"] == "facetrack/Door-1/metrics/sink-mqtt"
    assert ha_template(fps["value_template"], {"fps": 12.5}) == "12.5"


def discovery(collector: Collector, cfg) -> dict[str, dict]:
    """The configs of this node now on the broker, as a new subscriber sees them."""
    return {t: p for t, p in collector.latest().items()
            if t.startswith("homeassistant/") and f"/{ha.node_id(cfg)}/" in t and p is not None}


def announced_since(collector: Collector, mark: int) -> dict[str, dict]:
    """Configs published live (not retained copies) after message number `mark`."""
    with collector.lock:
        return {t: p for t, p, _, retained in collector.messages[mark:]
                if t.startswith("homeassistant/") and t.endswith("/config") and isinstance(p, dict) and not retained}


def faces(collector: Collector, stack_id: str) -> list[dict]:
    return collector.select(faces_topic("facetrack", stack_id))


def ha_remove(cfg, port: int, stack_id: str) -> str:
    done = subprocess.run([sys.executable, "-m", "facetrack.cli", "ha", "remove", "--set", f"mqtt.port={port}",
                           "--set", f"stack.id={stack_id}"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()


def test_entities_follow_the_faces_survive_restarts_and_are_removed(stack, broker):
    cfg = load_config(DEFAULT_CONFIG, [f"stack.id={stack.stack_id}"])
    collector = Collector(broker.port, topic="#", persistent=False)
    home = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="home-assistant")  # plays HA's birth message
    home.connect("127.0.0.1", broker.port)
    home.loop_start()
    sink = mqtt_sink(stack, broker.port)
    try:
        fixed = ha.entity_configs(cfg)
        stack.tracks_for = lambda pos: []
        stack.publish_until(lambda: set(fixed) <= set(discovery(collector, cfg)))
        stage = set(ha.stage_configs(cfg, "sink-mqtt"))  # the sink's own metrics come back to it on the bus
        stack.publish_until(lambda: stage <= set(discovery(collector, cfg)))
        first = discovery(collector, cfg)
        for topic, payload in first.items():
            check_config(topic, payload, cfg)
        assert {t: first[t] for t in fixed} == json.loads(ha.encode(fixed)) and len(first) == len(fixed) + 2
        stack.publish_until(lambda: faces(collector, stack.stack_id)[-1:] == [
            {"present": False, "count": 0, "name": "unknown"}])

        # One face, then two, then none: the binary sensor and the count follow the tracks.
        one = [Track(id=5, box=[40.0, 40.0, 120.0, 120.0], score=0.9, state="confirmed", age=3)]
        two = one + [Track(id=6, box=[200.0, 40.0, 280.0, 120.0], score=0.9, state="confirmed", age=3)]
        for tracks, count in ((one, 1), (two, 2)):
            stack.tracks_for = lambda pos, tracks=tracks: tracks
            stack.publish_until(lambda c=count: faces(collector, stack.stack_id)[-1:] ==
                                [{"present": c > 0, "count": c, "name": "unknown"}])
        # The name is that of a face present: Ada while track 5 is there, unknown once nobody is.
        stack.publisher.send(Identity(track_id=5, frame_id=stack.next_id, name="ada", distance=0.3, t=0.0))
        stack.publish_until(lambda: faces(collector, stack.stack_id)[-1] == {"present": True, "count": 2, "name": "ada"})
        stack.tracks_for = lambda pos: []
        stack.publish_until(lambda: faces(collector, stack.stack_id)[-1] == {"present": False, "count": 0,
                                                                             "name": "unknown"})
        assert all(p["present"] == (p["count"] > 0) for p in faces(collector, stack.stack_id))

        # HA restarts: its birth message brings every config again; garbage there is counted, nothing else.
        sent = stack.wait_metrics("sink-mqtt", lambda m: m.extra.get("ha_announced", 0) >= 6).extra["ha_announced"]
        home.publish("homeassistant/status", b"\xff not a status", qos=1).wait_for_publish(5)
        home.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
        m = stack.wait_metrics("sink-mqtt", lambda m: m.extra.get("ha_announced", 0) >= sent + len(fixed) + 2)
        assert m.extra["ha_status_ignored"] == 1 and sink.proc.poll() is None
        assert "Traceback" not in sink.log() and sink.log().count("ignored a message on homeassistant/status") == 1

        # The image entity's topic: the sink's own snapshots (services/sinks/snapshots.py), raw JPEG, retained.
        topic = snapshot_topic("facetrack", stack.stack_id)
        collector.wait(lambda: isinstance(collector.latest().get(topic), bytes), what="the sink's snapshot")
        assert collector.latest()[topic].startswith(b"\xff\xd8")  # a JPEG (test_snapshots shows it is the face)

        # The sink restarts: the same unique ids, the state again; unavailable while it is away.
        assert sink.stop() == 0
        collector.wait(lambda: collector.statuses(stack.stack_id)[-1:] == ["offline"], what="offline")
        mark = len(collector.messages)
        sink = mqtt_sink(stack, broker.port)
        stack.publish_until(lambda: set(first) <= set(announced_since(collector, mark)))
        assert announced_since(collector, mark) == first  # the same topics, unique ids and payloads

        # `facetrack ha remove` (the sink stopped first) empties every config of the node, stage sensors too.
        assert sink.stop() == 0
        out = ha_remove(cfg, broker.port, stack.stack_id)
        assert f"cleared {len(first)} discovery configs of node {ha.node_id(cfg)}" in out, out
        after = Collector(broker.port, topic="homeassistant/#", persistent=False)
        collector.wait(lambda: all(collector.latest()[t] is None for t in first), what="configs cleared")
        assert discovery(after, cfg) == {}
        after.close()

        # Announced again, then a sink with home_assistant.enabled false takes them back itself.
        sink = mqtt_sink(stack, broker.port)
        stack.publish_until(lambda: set(fixed) <= set(discovery(collector, cfg)))
        assert sink.stop() == 0
        sink = mqtt_sink(stack, broker.port, "--set=home_assistant.enabled=false")
        collector.wait(lambda: not discovery(collector, cfg), what="configs cleared by the disabled sink")
        assert sink.wait_log("removing homeassistant/binary_sensor/")
    finally:
        home.disconnect()
        home.loop_stop()
        collector.close()


def test_a_whole_stack_on_faces_is_announced_and_removed(tmp_path, broker):
    """faces://2 under supervisord: every entity and stage sensor announced, the faces seen, then removed."""
    collector = Collector(broker.port, topic="#", persistent=False)
    stack = Stack(tmp_path / "stack", {
        "stack": {"id": f"hall{os.getpid()}"},
        "capture": {"source": "faces://2"},
        "sink": {"http_port": free_port()},
        "mqtt": {"port": broker.port, "metrics_interval_s": 1.0},
    }, autostart={"sink-mqtt": True})
    cfg = stack.config
    stages = ("capture", "detector", "tracker", "sink-mqtt")
    try:
        stack.start(wait_for=("broker", "capture", "detector", "tracker", "sink-mqtt"))
        wanted = set(ha.entity_configs(cfg))
        for stage in stages:
            wanted |= set(ha.stage_configs(cfg, stage))
        collector.wait(lambda: wanted <= set(discovery(collector, cfg)), timeout=60,
                       what="every entity and stage sensor")
        announced = discovery(collector, cfg)
        for topic, payload in announced.items():
            check_config(topic, payload, cfg)
        collector.wait(lambda: any(p["present"] for p in faces(collector, cfg.stack.id)), timeout=30,
                       what="a face present")
        counts = {p["count"] for p in faces(collector, cfg.stack.id)}
        assert counts <= {0, 1, 2, 3} and max(counts) >= 1  # two faces (a re-found one may be a new track)
        assert all(p["present"] == (p["count"] > 0) for p in faces(collector, cfg.stack.id))
        snapshot = snapshot_topic("facetrack", cfg.stack.id)
        collector.wait(lambda: isinstance(collector.latest().get(snapshot), bytes), what="a face snapshot")
        assert faces_in(load_detector("full", "tvm", num_threads=1), collector.latest()[snapshot]) >= 1
        tracker = f"facetrack/{cfg.stack.id}/metrics/tracker"
        collector.wait(lambda: collector.select(tracker), what="the tracker's metrics, which its sensors read")
        fps = collector.select(tracker)[-1]["fps"]
        print(f"{len(announced)} configs announced; face counts seen {sorted(counts)}; tracker {fps} fps")

        stack.ctl("stop", "sink-mqtt", check=True)
        assert f"cleared {len(announced)} discovery configs" in ha_remove(cfg, broker.port, cfg.stack.id)
        collector.wait(lambda: not discovery(collector, cfg), what="every config cleared")
    finally:
        stack.shutdown()
        collector.close()
