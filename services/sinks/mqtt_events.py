"""MQTT event sink: track events, the stack's online/offline status and stage metrics, as JSON.

Topics (prefix `mqtt.topic_prefix`, default `facetrack`; `<stack>` is `stack.id`):

  <prefix>/<stack>/status             retained, QoS 1: {"state": "online"|"offline", "down", ...}; the
                                      broker publishes "offline" itself (MQTT last will) when the
                                      connection dies without a goodbye (process killed, network lost);
                                      "down": program -> why for every stage that should run and does
                                      not (the watchdog's StackHealth), sent again when it changes
  <prefix>/<stack>/tracks/started     QoS mqtt.qos (1): a track id first published as confirmed
  <prefix>/<stack>/tracks/ended       QoS mqtt.qos: the id left the tracks (duration, best face size)
  <prefix>/<stack>/tracks/identified  QoS mqtt.qos: the identity service named a live track (or renamed it)
  <prefix>/<stack>/metrics/<service>  QoS 0, every mqtt.metrics_interval_s: that stage's Metrics
  <prefix>/<stack>/faces              retained, QoS 0, on change: {"present", "count", "name"} (the face
                                      present named last, "unknown" when none is; not versioned:
                                      Home Assistant's sensors read it; services/sinks/home_assistant.py)
  <prefix>/<stack>/snapshot           retained, QoS 0: the newest face snapshot, raw JPEG bytes
                                      (Frigate's convention; snapshots.py); track events name it
                                      in `snapshot` ({"url", "file", "frame_id", "quality", "bytes"},
                                      null when snapshots are off or none could be made yet)
  <discovery_prefix>/.../config       retained, QoS 1: Home Assistant discovery (home_assistant.py)

Every payload is one JSON object with `v` (payload version, now 1), `event`, `stack`, `t`
(wall-clock seconds when published) and, for track events, `session` (random per sink start)
and `seq` (0, 1, 2 ... per session): a consumer sees a lost event as a gap in `seq` and a
duplicate (QoS 1 is at-least-once) as a repeated one. Track events carry `track_id` and `track`,
the track's key beyond its tracker run (common/runs.py: a restarted tracker numbers from 1 again,
so key a track by `track`, not by `track_id`).

The broker may go away: paho-mqtt reconnects by itself (backing off to mqtt.reconnect_max_s)
and keeps every QoS>0 message it has not seen acknowledged (resent after the reconnect), at most
mqtt.queue_size of them. An event beyond that bound is not queued: it is counted in the sink's
metrics as `events_dropped`. Nothing here ever blocks the bus loop.

Credentials and TLS come from services/sinks/mqtt_connect.py. A connection that fails (CONNACK
refused: bad user name or password, not authorised; a TLS error: unknown CA, hostname mismatch;
no broker) is logged once with the broker and the reason, and again only for a reason not yet
logged since the last good connection (or every FAIL_REPEAT_S: a broker that alternates between
two answers, as mosquitto's TLS listener may when it closes right after refusing, is two lines); paho 2.1's loop thread (connect_async + loop_start, reconnect_on_failure)
retries after each of them: a refused CONNACK closes the socket and the loop reconnects after its
backoff; an OSError in connect (TLS included) calls on_connect_fail and retries the same way. The
sink keeps running and queueing meanwhile. The sink speaks MQTT 3.1.1: a publish that the broker's
ACL denies is acknowledged and dropped by mosquitto, so the sink cannot tell (MQTT 5 would give
the reason code 0x87 in the PUBACK); the broker's debug log says "Denied PUBLISH".
"""
from __future__ import annotations

import json
import logging
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from common.config import Config, EventsConfig
from common.messages import Identity, Metrics, Tracks
from common.runs import RunWatch, track_key
from services.sinks import home_assistant as ha
from services.sinks.home_assistant import UNKNOWN
from services.sinks.base import Sink
from services.sinks.mqtt_connect import secure
from services.sinks.mqtt_topics import faces_topic, metrics_topic, snapshot_topic, status_topic, track_topic
from services.sinks.pairing import Paired

__all__ = ["MqttEvents", "MqttLink", "TrackEvents", "faces_topic", "metrics_topic", "snapshot_topic", "status_topic",
           "track_topic"]

log = logging.getLogger("sink.mqtt")

PAYLOAD_VERSION = 1
EVENTS = ("started", "ended", "identified")
FAIL_REPEAT_S = 600.0  # a connection failure that goes on is logged again this often (a new reason at once)


@dataclass
class TrackLife:
    """What the sink remembers of one live track (one face, whatever ids the tracker gave it)."""
    track_id: int
    key: str  # the track beyond its run (common/runs.py)
    first_frame_id: int
    t_first: float  # t_capture of the first confirmed frame
    last_frame_id: int
    t_last: float  # t_capture of the last frame the track was confirmed on
    frames: int = 1
    best: dict = field(default_factory=dict)  # {"width", "height", "frame_id"} of the largest box
    name: str | None = None
    named_at: float = 0.0  # Identity.t when `name` was taken
    box: list[float] = field(default_factory=list)  # the newest box it was seen with
    missing_since: float | None = None  # t_capture of the first Tracks message without it
    ids: set[int] = field(default_factory=set)  # the tracker's ids for this face (a rejoin adds one)
    pending: tuple[str, float] | None = None  # a different name and when it was first heard

    def see(self, frame_id: int, t_capture: float, box: list[float]) -> None:
        w, h = box[2] - box[0], box[3] - box[1]
        if not self.best or w * h > self.best["width"] * self.best["height"]:
            self.best = {"width": round(w, 1), "height": round(h, 1), "frame_id": frame_id}
        self.last_frame_id, self.t_last, self.box = frame_id, t_capture, box


def _iou(a: list[float], b: list[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class TrackEvents:
    """Turns the stream of Tracks (and Identity) messages into started/ended/identified events.

    A track starts the first time its id is published as confirmed. It ends once its id has been
    missing from the Tracks messages for `events.end_after_s` of capture time: a track the tracker
    hides for a frame or two, or one that comes back, continues (no second start). A new id whose
    first confirmed box lies on the place a missing track left (IoU >= `events.rejoin_iou`) is that
    face again: it continues the missing track's life (its events keep the first id). Lost-state
    frames keep a track alive but do not count as seen. A new tracker run (a restarted tracker or
    capture) ends every track at once. A track's name, once it has one, changes (to another name,
    or back to unknown) only when the new answer has held for `events.name_hold_s` (Identity.t):
    one doubtful view does not rename a face. Each event is (kind, fields) with kind in EVENTS.
    All times come from the messages: the machine has no clock of its own.
    """

    def __init__(self, cfg: EventsConfig | None = None):
        self.cfg = cfg or EventsConfig()
        self.live: dict[int, TrackLife] = {}  # first id (of the run `run.run`) -> life
        self.alias: dict[int, int] = {}  # tracker id -> the first id of its life
        self.run = RunWatch()
        self.rejoins = 0
        self.snapshot = lambda key: None

    def _snapshot(self, key: str) -> dict | None:
        found = self.snapshot(key)
        return None if found is None else found.summary()

    def tracks(self, msg: Tracks, source_pos: int | None = None, names=None,
               snapshot=lambda key: None) -> list[tuple[str, dict]]:
        """Events of one Tracks message; `names`: track id -> name known so far (the sink loop's);
        `snapshot(key)`: the face snapshot of the track key (common/runs.py), or None."""
        self.snapshot = snapshot
        events = []
        if self.run.changed(msg.run_id):
            events += self.end_all("restart")
        present = set()
        for t in msg.tracks:
            tid = self.alias.get(t.id, t.id)
            life = self.live.get(tid)
            if life is not None:
                present.add(tid)
            if t.state != "confirmed":
                continue
            if life is None:
                life = self._rejoin(t.id, list(t.box), present)
            if life is None:
                life = self.live[t.id] = TrackLife(t.id, track_key(msg.run_id, t.id), msg.frame_id, msg.t_capture,
                                                   msg.frame_id, msg.t_capture, frames=0, ids={t.id})
                self.alias[t.id] = t.id
                life.name = (names or {}).get(t.id)
                events.append(("started", {
                    "track_id": t.id, "track": life.key, "frame_id": msg.frame_id, "source_pos": source_pos,
                    "t_capture": msg.t_capture, "t_tracked": msg.t_tracked,
                    "box": [round(v, 1) for v in t.box], "score": round(t.score, 4), "name": life.name,
                    "snapshot": self._snapshot(life.key)}))
            present.add(life.track_id)
            life.frames += 1
            life.see(msg.frame_id, msg.t_capture, list(t.box))
        for tid, life in list(self.live.items()):
            if tid in present:
                life.missing_since = None
                continue
            if life.missing_since is None:
                life.missing_since = msg.t_capture
            if msg.t_capture - life.missing_since >= self.cfg.end_after_s:
                events.append(self._end(tid, "gone", msg.frame_id))
        return events

    def _rejoin(self, new_id: int, box: list[float], present: set[int]) -> TrackLife | None:
        """The missing life whose last box `box` overlaps most (at least rejoin_iou), now under `new_id` too."""
        best, best_iou = None, self.cfg.rejoin_iou
        for tid, life in self.live.items():
            if tid in present or not life.box:
                continue
            overlap = _iou(life.box, box)
            if overlap >= best_iou:
                best, best_iou = life, overlap
        if best is not None:
            best.ids.add(new_id)
            self.alias[new_id] = best.track_id
            self.rejoins += 1
        return best

    def identity(self, msg: Identity) -> list[tuple[str, dict]]:
        life = self.live.get(self.alias.get(msg.track_id, msg.track_id))
        if life is None or life.name == msg.name:
            if life is not None:
                life.pending = None
            return []
        if life.name not in (None, UNKNOWN):  # named: another answer must hold first
            if life.pending is None or life.pending[0] != msg.name:
                life.pending = (msg.name, msg.t)
            if msg.t - life.pending[1] < self.cfg.name_hold_s:
                return []
        life.name, life.named_at, life.pending = msg.name, msg.t, None
        return [("identified", {"track_id": life.track_id, "track": life.key, "name": msg.name,
                                "distance": round(msg.distance, 4),
                                "frame_id": msg.frame_id})]

    def present_name(self) -> str:
        """The name of the face present that was named last, "unknown" when none is named."""
        named = [life for life in self.live.values() if life.name not in (None, UNKNOWN)]
        return max(named, key=lambda life: life.named_at).name if named else UNKNOWN  # type: ignore[return-value]

    def end_all(self, reason: str) -> list[tuple[str, dict]]:
        return [self._end(tid, reason, None) for tid in list(self.live)]

    def _end(self, tid: int, reason: str, frame_id: int | None) -> tuple[str, dict]:
        life = self.live.pop(tid)
        for other in life.ids:
            self.alias.pop(other, None)
        return ("ended", {
            "track_id": tid, "track": life.key, "reason": reason, "ended_frame_id": frame_id,
            "first_frame_id": life.first_frame_id, "last_frame_id": life.last_frame_id, "frames": life.frames,
            "t_first": life.t_first, "t_last": life.t_last, "duration_s": round(life.t_last - life.t_first, 4),
            "best_face": life.best, "name": life.name, "snapshot": self._snapshot(life.key),
            "track_ids": sorted(life.ids)})


class MqttLink:
    """One paho-mqtt client: connects in the background, reconnects, bounds what it keeps.

    `publish` never blocks. Counters, track events and metrics apart: published (track events
    handed to paho), dropped (track events not handed over: QoS>0 refused because
    mqtt.queue_size messages were unacknowledged, or QoS 0 while disconnected), skipped (metrics
    not sent: QoS 0 while disconnected), connects; `pending` is how many QoS>0 messages paho
    holds unacknowledged now.
    """

    def __init__(self, cfg: Config, session: str):
        m = cfg.mqtt
        self.cfg = m
        self.stack = cfg.stack.id
        self.session = session
        self.status = status_topic(m.topic_prefix, self.stack)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=m.client_id, clean_session=True,
                                  reconnect_on_failure=True)
        self.client.max_queued_messages_set(m.queue_size)
        # paho's stub says int; it sleeps a float number of seconds
        self.client.reconnect_delay_set(min_delay=0.5, max_delay=max(0.5, m.reconnect_max_s))  # type: ignore[arg-type]
        self.client.will_set(self.status, self._status_payload("offline", "connection lost"), qos=1, retain=True)
        secure(self.client, m)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.broker = f"{m.host}:{m.port}"
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.published = self.dropped = self.skipped = self.connects = self.failures = 0
        self.listeners: dict[str, Callable[[mqtt.MQTTMessage], None]] = {}
        self._failing: dict[str, float] = {}  # reasons logged since the last good connection -> when
        self._closing = False
        self._refused = False  # the last attempt got a refusing CONNACK (its close is not a second failure)
        self.down: dict[str, str] = {}  # stages that should run and do not, told in every "online" status

    def _status_payload(self, state: str, reason: str) -> str:
        return json.dumps({"v": PAYLOAD_VERSION, "event": "status", "stack": self.stack, "state": state,
                           "reason": reason, "down": self.down if state == "online" else {},
                           "session": self.session, "t": time.time()})

    def set_down(self, down: dict[str, str]) -> None:
        """The stages down changed: the retained status says so now (or at the next connection)."""
        self.down = dict(down)
        if self.connected.is_set():
            self.client.publish(self.status, self._status_payload("online", "stages down" if down else "connected"),
                                qos=1, retain=True)

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        log.info("MQTT broker %s%s%s, topics %s/%s/..., event QoS %d, queue %d", self.broker,
                 " (TLS)" if self.cfg.tls_ca else "", f" as {self.cfg.username}" if self.cfg.username else "",
                 self.cfg.topic_prefix, self.stack, self.cfg.qos, self.cfg.queue_size)

    def listen(self, topic: str, callback: Callable[[mqtt.MQTTMessage], None]) -> None:
        """Subscribe to `topic` (QoS 1) on every connection; `callback` runs on paho's thread."""
        self.listeners[topic] = callback
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    def _on_message(self, _client, _userdata, msg: mqtt.MQTTMessage) -> None:
        for topic, callback in list(self.listeners.items()):
            if mqtt.topic_matches_sub(topic, msg.topic):
                callback(msg)

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if reason.is_failure:  # CONNACK refused: paho closes the socket and tries again (backing off)
            self._refused = True
            self._failed(f"refused the connection: {reason}", logging.ERROR)
            return
        with self.lock:
            self.connects += 1
        after = f" after {self.failures} failed attempts" if self._failing else ""
        self._failing.clear()
        log.info("connected to MQTT broker %s (connection %d)%s", self.broker, self.connects, after)
        self.connected.set()
        client.publish(self.status, self._status_payload("online", "connected"), qos=1, retain=True)
        for topic in self.listeners:
            client.subscribe(topic, qos=1)

    def _on_connect_fail(self, _client, _userdata) -> None:
        """No connection (TCP or TLS). paho calls this inside its `except OSError`, so the error is at hand."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLCertVerificationError):
            self._failed(f"TLS: certificate verify failed: {exc.verify_message}", logging.ERROR)
        elif isinstance(exc, ssl.SSLError):
            self._failed(f"TLS: {exc.reason or exc}", logging.ERROR)
        else:
            self._failed(f"cannot connect ({exc or 'unknown error'})", logging.WARNING)

    def _failed(self, reason: str, level: int) -> None:
        """One line for a failure: the first of each reason since the last connection, then every FAIL_REPEAT_S."""
        self.failures += 1
        now = time.monotonic()
        if now - self._failing.get(reason, -FAIL_REPEAT_S) >= FAIL_REPEAT_S:
            log.log(level, "MQTT broker %s: %s (%d failed attempts); retrying, backing off to %g s; "
                    "events are kept (at most %d)", self.broker, reason, self.failures, self.cfg.reconnect_max_s,
                    self.cfg.queue_size)
            self._failing[reason] = now

    def _on_disconnect(self, _client, _userdata, _flags, reason, _props) -> None:
        if self._closing:
            pass
        elif self.connected.is_set():
            log.warning("MQTT broker connection lost (%s): reconnecting; events are kept (at most %d)",
                        reason, self.cfg.queue_size)
        elif self._refused:  # the close that follows a refused CONNACK: already counted
            self._refused = False
        else:  # closed before any CONNACK: over TLS, typically a client certificate it wants and did not get
            self._failed(f"closed the connection before accepting it ({reason}): "
                         f"{'a client certificate it requires (mqtt.tls_cert)?' if self.cfg.tls_ca else 'a TLS port?'}",
                         logging.ERROR)
        self.connected.clear()

    def publish(self, topic: str, payload: dict, qos: int, event: bool = True) -> bool:
        """Hand one message to paho; False when it was not (queue full, or QoS 0 while offline).

        `event`: a track event (counted in published/dropped); else a metrics message (counted,
        when not sent, in skipped only).
        """
        if qos == 0 and not self.connected.is_set():
            return self._not_sent(event, "not connected")
        info = self.client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=qos)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return self._not_sent(event, f"queue full ({self.cfg.queue_size} unacknowledged)")
        if qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            return self._not_sent(event, mqtt.error_string(info.rc))
        if event:
            self.published += 1
        return True

    def publish_raw(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = True) -> bool:
        """Hand raw bytes to paho (a JPEG snapshot, a retained state or discovery config); not a track event.

        QoS 0 is sent only while connected (False otherwise); QoS 1 is queued like events.
        """
        if qos == 0 and not self.connected.is_set():
            return False
        return self.client.publish(topic, payload, qos=qos, retain=retain).rc == mqtt.MQTT_ERR_SUCCESS

    def _not_sent(self, event: bool, why: str) -> bool:
        if not event:
            self.skipped += 1
            return False
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            log.warning("MQTT %s: %d events dropped so far", why, self.dropped)
        return False

    @property
    def pending(self) -> int:
        """Messages paho still holds: QoS>0 ones not yet acknowledged by the broker (the bounded queue)."""
        return len(getattr(self.client, "_out_messages", ()))  # paho-mqtt 2.1 (pinned) keeps them there

    def close(self, timeout: float = 3.0) -> None:
        """Say goodbye: status offline (retained), wait a moment for what is queued, disconnect."""
        deadline = time.monotonic() + timeout
        if self.connected.is_set():
            info = self.client.publish(self.status, self._status_payload("offline", "stopped"), qos=1, retain=True)
            while self.pending > 0 and time.monotonic() < deadline and self.connected.is_set():
                time.sleep(0.02)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self._closing = True  # a goodbye, not a lost connection
        self.client.disconnect()
        self.client.loop_stop()


class MqttEvents(Sink, kind="mqtt"):
    needs_pixels = False
    wants_metrics = True
    wants_snapshots = True

    @classmethod
    def from_context(cls, ctx) -> MqttEvents:
        return cls(ctx.config)

    def __init__(self, cfg: Config, link: MqttLink | None = None):
        self.cfg = cfg
        self.stack = cfg.stack.id
        self.prefix = cfg.mqtt.topic_prefix
        self.session = secrets.token_hex(4)
        self.link = link or MqttLink(cfg, self.session)
        self.events = TrackEvents(cfg.events)
        self.seq = 0
        self.counts = {kind: 0 for kind in EVENTS}
        self.metrics: dict[str, Metrics] = {}
        self._next_metrics = 0.0
        self.faces = ha.FaceState()
        self.stages: set[str] = set()  # stages whose HA sensors were announced on this connection
        self._announced_on = 0  # the connection (link.connects) the HA configs were last sent on
        self._birth = threading.Event()  # HA said "online": send the configs again
        self.ha_announced = self.ha_ignored = self.ha_cleared = 0
        self.snapshots_published = self.snapshots_skipped = 0

    def start(self) -> None:
        if self.cfg.home_assistant.enabled:
            self.link.listen(ha.birth_topic(self.cfg), self._on_ha_status)
        else:  # disabled: take back what this node announced before (every config found retained)
            self.link.listen(ha.node_config_filter(self.cfg), self._on_old_config)
        self.link.start()

    def _on_ha_status(self, msg) -> None:
        """HA's birth message (paho's thread): "online" asks for every config again."""
        if msg.payload == ha.BIRTH_ONLINE:
            self._birth.set()
        elif msg.payload != ha.BIRTH_OFFLINE:
            self.ha_ignored += 1
            if self.ha_ignored == 1 or self.ha_ignored % 100 == 0:
                log.warning("ignored a message on %s that is neither online nor offline (%d so far): %r",
                            msg.topic, self.ha_ignored, msg.payload[:40])

    def _on_old_config(self, msg) -> None:
        if msg.payload:
            self.ha_cleared += 1
            log.info("home_assistant.enabled is false: removing %s", msg.topic)
            self.link.publish_raw(msg.topic, b"", qos=1, retain=True)

    def handle(self, paired: Paired) -> None:
        self._emit(self.events.tracks(paired.tracks, paired.frame.source_pos, paired.names, paired.snapshot))
        self.faces.count = len(self.events.live)
        self.faces.name = self.events.present_name()

    def on_down(self, down: dict[str, str]) -> None:
        self.link.set_down(down)

    def on_silence(self, quiet_s: float) -> None:
        """The video stopped: every live track ends ("no video") and nobody is present."""
        self._emit(self.events.end_all("no video"))
        self.faces.count = 0
        self.faces.name = self.events.present_name()

    def on_snapshot(self, snapshot) -> None:
        """The newest face snapshot, retained (QoS 0: a newer one replaces it anyway; skipped while offline)."""
        if self.link.publish_raw(snapshot_topic(self.prefix, self.stack), snapshot.jpeg, qos=0, retain=True):
            self.snapshots_published += 1
        else:
            self.snapshots_skipped += 1

    def on_identity(self, msg: Identity) -> None:
        self._emit(self.events.identity(msg))
        self.faces.name = self.events.present_name()

    def on_metrics(self, msg: Metrics) -> None:
        self.metrics[msg.service] = msg

    def _emit(self, events: list[tuple[str, dict]]) -> None:
        for kind, fields in events:
            payload = {"v": PAYLOAD_VERSION, "event": f"track_{kind}", "stack": self.stack,
                       "session": self.session, "seq": self.seq, "t": time.time(), **fields}
            self.seq += 1
            self.counts[kind] += 1
            self.link.publish(track_topic(self.prefix, self.stack, kind), payload, self.cfg.mqtt.qos)

    def tick(self) -> None:
        """Home Assistant's configs when due, the faces state when it changed, and the metrics when due."""
        if self.link.connected.is_set():
            if self.link.connects != self._announced_on:  # a new connection: everything retained again
                self._announced_on = self.link.connects
                self.faces.resend()
                self._announce(everything=True)
            else:
                self._announce(everything=self._birth.is_set())
            if self.faces.changed() and self.link.publish_raw(faces_topic(self.prefix, self.stack),
                                                              self.faces.payload(), qos=0, retain=True):
                self.faces.sent()
        self._publish_metrics()

    def _announce(self, everything: bool) -> None:
        """Every config (a new connection, HA's birth), else a new stage's sensors when its metrics first come."""
        if not self.cfg.home_assistant.enabled:
            return
        configs = {}
        if everything:
            self._birth.clear()
            self.stages.clear()
            self.faces.resend()
            configs.update(ha.entity_configs(self.cfg))
        if self.cfg.mqtt.metrics_interval_s > 0:
            for service in sorted(set(self.metrics) - self.stages):
                configs.update(ha.stage_configs(self.cfg, service))
                if service == ha.BOARD_STAGE:
                    configs.update(ha.board_configs(self.cfg, self.metrics[service].extra))
                self.stages.add(service)
        for topic, payload in configs.items():
            self.ha_announced += self.link.publish_raw(topic, ha.encode(payload), qos=1, retain=True)

    def _publish_metrics(self) -> None:
        """Every mqtt.metrics_interval_s, each service's newest metrics."""
        period = self.cfg.mqtt.metrics_interval_s
        now = time.monotonic()
        if period <= 0 or now < self._next_metrics or not self.metrics:
            return
        self._next_metrics = now + period
        for service, m in sorted(self.metrics.items()):
            payload = {"v": PAYLOAD_VERSION, "event": "metrics", "stack": self.stack, "service": service,
                       "t": time.time(), "t_metrics": m.t, "pid": m.pid, "fps": round(m.fps, 2),
                       "frames_in": m.frames_in, "frames_out": m.frames_out, "p50_ms": round(m.p50_ms, 2),
                       "p99_ms": round(m.p99_ms, 2), "dropped": m.dropped, "errors": m.errors,
                       "cpu_percent": m.cpu_percent, "rss_bytes": m.rss_bytes, "extra": m.extra}
            self.link.publish(metrics_topic(self.prefix, self.stack, service), payload, 0, event=False)

    def stats(self) -> dict[str, float]:
        link = self.link
        return {"events_started": self.counts["started"], "events_ended": self.counts["ended"],
                "events_identified": self.counts["identified"], "events_published": link.published,
                "events_pending": link.pending, "events_dropped": link.dropped,
                "metrics_skipped": link.skipped, "snapshots_published": self.snapshots_published,
                "snapshots_skipped": self.snapshots_skipped, "mqtt_connected": float(link.connected.is_set()),
                "mqtt_connects": link.connects, "mqtt_failures": link.failures, "live_tracks": len(self.events.live),
                "track_rejoins": self.events.rejoins,
                "ha_announced": self.ha_announced, "ha_status_ignored": self.ha_ignored, "ha_cleared": self.ha_cleared}

    def close(self) -> None:
        # Tracks still live are not ended here: the stack may come back and continue them;
        # the status going offline tells the consumer that nothing more will come for now.
        self.link.close()
        log.info("events: %s, %d dropped", self.counts, self.link.dropped)
