"""Home Assistant MQTT discovery for one stack: the config payloads, and the face state they read.

Pure functions and a small state holder; the mqtt sink (services/sinks/mqtt_events.py) publishes
them. Following HA's discovery convention, each entity is one retained JSON config on
`<discovery_prefix>/<component>/<node_id>/<object_id>/config` with a `unique_id` made of the node
id and the object id (stable across restarts, so HA keeps the entity and its history), a
`default_entity_id` (`<component>.<node_id>_<object_id>`, what HA 2025.10+ reads instead of the
old `object_id`), one `device` block shared by all (identifiers = [node_id]) and `availability`
on the sink's own retained status topic (`{"state": "online"|"offline"}`), whose last will makes
every entity unavailable when the sink dies. An empty retained payload on a config topic removes
the entity.

Entities, all reading topics of ours:

  binary_sensor face_present   occupancy; ON from a track's start to the end of the last one
  sensor face_count            tracks alive now (started, not ended: the track events' count)
  sensor last_name             name of the face present that was named last ("unknown" when none is)
  image snapshot               raw JPEG bytes, retained, on <prefix>/<stack>/snapshot
  binary_sensor stages_down    problem; ON while a stage that should run does not (the status
                               topic's "down", its programs and causes as attributes)
  sensor <stage>_fps, <stage>_p50_ms   diagnostic, per stage seen in the metrics, from
                               <prefix>/<stack>/metrics/<stage> (value_template on its JSON)
  sensor board_temperature, board_cpu_frequency, binary_sensor board_throttled, board_undervoltage
                               diagnostic: the board's health (common/board.py) from capture's
                               metrics (capture runs on the board), those the board exposes

The first three read `<prefix>/<stack>/faces`, retained: {"present": bool, "count": n, "name": str}.
"""
from __future__ import annotations

import importlib.metadata
import json
import re

from common.config import Config
from services.sinks.mqtt_topics import faces_topic, metrics_topic, snapshot_topic, status_topic

BIRTH_ONLINE, BIRTH_OFFLINE = b"online", b"offline"  # HA's birth and last-will payloads on <prefix>/status
UNKNOWN = "unknown"  # the faces state's name while no face is named


def version() -> str:
    try:
        return importlib.metadata.version("facetrack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def slug(text: str) -> str:
    """What HA allows in a node id, object id and entity id: lowercase letters, digits, `_`."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "facetrack"


def node_id(cfg: Config) -> str:
    return slug(cfg.home_assistant.node_id)


def config_topic(cfg: Config, component: str, object_id: str) -> str:
    return f"{cfg.home_assistant.discovery_prefix}/{component}/{node_id(cfg)}/{object_id}/config"


def node_config_filter(cfg: Config) -> str:
    """Every config topic of this node (what `facetrack ha remove` and a disabled sink clear)."""
    return f"{cfg.home_assistant.discovery_prefix}/+/{node_id(cfg)}/+/config"


def birth_topic(cfg: Config) -> str:
    return f"{cfg.home_assistant.discovery_prefix}/status"


def device(cfg: Config) -> dict:
    block = {"identifiers": [node_id(cfg)], "name": cfg.home_assistant.device_name, "manufacturer": "facetrack",
             "model": "facetrack face tracker", "sw_version": version()}
    if cfg.home_assistant.configuration_url:
        block["configuration_url"] = cfg.home_assistant.configuration_url
    return block


def _entity(cfg: Config, component: str, object_id: str, name: str, **fields) -> tuple[str, dict]:
    node = node_id(cfg)
    return config_topic(cfg, component, object_id), {
        "name": name, "unique_id": f"{node}_{object_id}", "default_entity_id": f"{component}.{node}_{object_id}",
        "device": device(cfg), "origin": {"name": "facetrack", "sw_version": version()},
        "availability": [{"topic": status_topic(cfg.mqtt.topic_prefix, cfg.stack.id),
                          "value_template": "{{ value_json.state }}",
                          "payload_available": "online", "payload_not_available": "offline"}],
        **fields}


def entity_configs(cfg: Config) -> dict[str, dict]:
    """Config topic -> payload of the fixed entities (faces and the snapshot)."""
    faces = faces_topic(cfg.mqtt.topic_prefix, cfg.stack.id)
    status = status_topic(cfg.mqtt.topic_prefix, cfg.stack.id)
    return dict([
        _entity(cfg, "binary_sensor", "face_present", "Face present", state_topic=faces, device_class="occupancy",
                value_template="{{ 'ON' if value_json.present else 'OFF' }}", payload_on="ON", payload_off="OFF"),
        _entity(cfg, "sensor", "face_count", "Faces", state_topic=faces, value_template="{{ value_json.count }}",
                state_class="measurement", icon="mdi:account-multiple"),
        _entity(cfg, "sensor", "last_name", "Last recognised name", state_topic=faces,
                value_template="{{ value_json.name }}", icon="mdi:account-search"),
        _entity(cfg, "binary_sensor", "stages_down", "Stages down", state_topic=status, device_class="problem",
                value_template="{{ 'ON' if value_json.down else 'OFF' }}", payload_on="ON", payload_off="OFF",
                json_attributes_topic=status, json_attributes_template="{{ value_json.down | tojson }}",
                entity_category="diagnostic"),
        _entity(cfg, "image", "snapshot", "Face snapshot", image_topic=snapshot_topic(cfg.mqtt.topic_prefix, cfg.stack.id),
                content_type="image/jpeg"),
    ])


def stage_configs(cfg: Config, service: str) -> dict[str, dict]:
    """Config topic -> payload of one stage's diagnostic sensors (fps, p50 latency)."""
    topic = metrics_topic(cfg.mqtt.topic_prefix, cfg.stack.id, service)
    stage = slug(service)
    common = {"state_topic": topic, "state_class": "measurement", "entity_category": "diagnostic",
              "expire_after": max(30, round(3 * cfg.mqtt.metrics_interval_s))}
    return dict([
        _entity(cfg, "sensor", f"{stage}_fps", f"{service} fps", value_template="{{ value_json.fps }}",
                unit_of_measurement="fps", icon="mdi:speedometer", **common),
        _entity(cfg, "sensor", f"{stage}_p50_ms", f"{service} p50 latency", value_template="{{ value_json.p50_ms }}",
                unit_of_measurement="ms", device_class="duration", **common),
    ])


BOARD_STAGE = "capture"  # runs on the board itself: its metrics carry the board's health


def board_configs(cfg: Config, extra: dict[str, float]) -> dict[str, dict]:
    """Config topic -> payload of the board's diagnostic entities, for the health values capture reports."""
    common = {"state_topic": metrics_topic(cfg.mqtt.topic_prefix, cfg.stack.id, BOARD_STAGE),
              "entity_category": "diagnostic", "expire_after": max(30, round(3 * cfg.mqtt.metrics_interval_s))}
    problem = {"device_class": "problem", "payload_on": "ON", "payload_off": "OFF", **common}
    entities = []
    if "temp_c" in extra:
        entities.append(_entity(cfg, "sensor", "board_temperature", "SoC temperature", state_class="measurement",
                                value_template="{{ value_json.extra.temp_c }}", unit_of_measurement="°C",
                                device_class="temperature", **common))
    if "cpu_mhz" in extra:
        entities.append(_entity(cfg, "sensor", "board_cpu_frequency", "CPU frequency", state_class="measurement",
                                value_template="{{ value_json.extra.cpu_mhz }}", unit_of_measurement="MHz",
                                device_class="frequency", **common))
    if "throttled_flags" in extra:
        entities.append(_entity(cfg, "binary_sensor", "board_throttled", "Throttled", **problem, value_template=(
            "{{ 'ON' if value_json.extra.throttled or value_json.extra.freq_capped or "
            "value_json.extra.soft_temp_limit else 'OFF' }}")))
        entities.append(_entity(cfg, "binary_sensor", "board_undervoltage", "Under-voltage", **problem,
                                value_template="{{ 'ON' if value_json.extra.undervoltage else 'OFF' }}"))
    return dict(entities)


def encode(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


class FaceState:
    """What `<prefix>/<stack>/faces` says: changed() tells the sink when to publish it again."""

    def __init__(self):
        self.count = 0
        self.name = UNKNOWN
        self._sent: str | None = None

    def payload(self) -> str:
        return encode({"present": self.count > 0, "count": self.count, "name": self.name})

    def changed(self) -> bool:
        return self.payload() != self._sent

    def sent(self) -> None:
        self._sent = self.payload()

    def resend(self) -> None:
        """Send it again, changed or not (a new connection, HA restarted)."""
        self._sent = None
