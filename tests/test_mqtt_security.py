"""The MQTT sink against a secured mosquitto: a password file, an ACL, TLS with a test CA.

The broker (tests/mqtt_support.Mosquitto) refuses anonymous clients, lets the sink's user write
only `facetrack/<stack>/#` and read and write `homeassistant/#`, and has a TLS
listener whose certificate (made by openssl here) names 127.0.0.1 and localhost. The sink is the
real `python -m services.sink --kind mqtt` subprocess of tests/sink_support.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from common.config import ROOT
from mqtt_support import Certs, Collector, Mosquitto
from test_mqtt_events import PERIOD, expected_events, mqtt_sink, received, scripted
from needs import tool

SINK_USER, SINK_PASSWORD = "facetrack", "s3cret-sink"
READER = ("collector", "c0llect")


def acl(stack_id: str) -> str:
    return (f"user {SINK_USER}\ntopic write facetrack/{stack_id}/#\ntopic readwrite homeassistant/#\n"
            f"user {READER[0]}\ntopic read #\n")


@pytest.fixture
def certs(tmp_path):
    tool("openssl", "openssl")
    tool("mosquitto_passwd", "mosquitto")
    return Certs(tmp_path / "certs")


def secured(tmp_path, stack, tls) -> Mosquitto:
    return Mosquitto(tmp_path / "mosquitto", users={SINK_USER: SINK_PASSWORD, READER[0]: READER[1]},
                     acl=acl(stack.stack_id), tls=tls).start()


def tls_sink(stack, broker, password_file, ca, *extra):
    return mqtt_sink(stack, broker.tls_port, f"--set=mqtt.username={SINK_USER}",
                     f"--set=mqtt.password_file={password_file}", f"--set=mqtt.tls_ca={ca}",
                     "--set=mqtt.reconnect_max_s=0.5", *extra)


def error_lines(sink, pattern: str) -> list[str]:
    return [line for line in sink.log().splitlines() if " ERROR " in line and re.search(pattern, line)]


def test_wrong_password_is_one_error_events_wait_and_arrive_after_the_fix(stack, tmp_path, certs):
    broker = secured(tmp_path, stack, certs.server("broker"))
    collector = Collector(broker.port, topic="#", auth=READER)
    password = tmp_path / "mqtt-password"
    password.write_text("not-the-password\n")
    sink = tls_sink(stack, broker, password, certs.ca)
    try:
        sink.wait_log(rf"ERROR .*MQTT broker 127\.0\.0\.1:{broker.tls_port}: refused the connection: Not authorized")
        stack.tracks_for = lambda pos: []
        stack.publish_until(lambda: (m := stack.newest_metrics("sink-mqtt")) is not None and m.frames_out > 0)
        base = stack.scene_base = stack.next_id
        stack.tracks_for = lambda pos: scripted(stack.next_id - 1 - base)
        stack.publish_n(3 * PERIOD, fps=40)  # three tracks start and end while the broker refuses the sink
        want = expected_events(stack)
        assert len(want) == 6
        m = stack.wait_metrics("sink-mqtt", lambda m: m.extra.get("events_pending", 0) >= len(want)
                               and m.extra.get("mqtt_failures", 0) >= 4)
        assert sink.proc.poll() is None and m.extra["mqtt_connected"] == 0 and m.extra["events_dropped"] == 0
        assert len(error_lines(sink, "refused the connection")) == 1, sink.log()  # not one per retry
        assert received(collector, stack.stack_id) == []

        password.write_text(SINK_PASSWORD + "\n")  # the operator fixes our file: no restart
        sink.wait_log(rf"connected to MQTT broker 127\.0\.0\.1:{broker.tls_port} \(connection 1\) after \d+ failed")
        collector.wait(lambda: received(collector, stack.stack_id) == want, what="the queued events after the fix")
        collector.wait(lambda: collector.statuses(stack.stack_id)[-1:] == ["online"], what="status online")
        assert len(error_lines(sink, "")) == 1
        node = f"homeassistant/binary_sensor/facetrack_{stack.stack_id}/face_present/config"
        collector.wait(lambda: isinstance(collector.latest().get(node), dict), what="HA discovery through the ACL")

        # `facetrack ha remove` connects the same way: TLS, the user, here the password from the environment.
        assert sink.stop() == 0
        done = subprocess.run([sys.executable, "-m", "facetrack.cli", "ha", "remove", "--set", f"stack.id={stack.stack_id}",
                               "--set", f"mqtt.port={broker.tls_port}", "--set", f"mqtt.username={SINK_USER}",
                               "--set", f"mqtt.tls_ca={certs.ca}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, env={**os.environ, "FACETRACK_MQTT_PASSWORD": SINK_PASSWORD})
        # 5 fixed entities (face present, faces, last name, stages down, snapshot) and sink-mqtt's 2 stage sensors
        assert done.returncode == 0 and "cleared 7 discovery configs" in done.stderr, done.stderr
        collector.wait(lambda: collector.latest()[node] is None, what="the configs cleared")
    finally:
        collector.close()
        broker.stop()


def test_a_certificate_for_another_host_is_refused_in_one_line(stack, tmp_path, certs):
    broker = secured(tmp_path, stack, certs.server("elsewhere", "DNS:elsewhere.example"))
    password = tmp_path / "mqtt-password"
    password.write_text(SINK_PASSWORD)
    sink = tls_sink(stack, broker, password, certs.ca)
    sink.wait_log(rf"ERROR .*MQTT broker 127\.0\.0\.1:{broker.tls_port}: TLS: certificate verify failed: "
                  r"IP address mismatch")
    m = stack.wait_metrics("sink-mqtt", lambda m: m.extra.get("mqtt_failures", 0) >= 4)
    assert m.extra["mqtt_connects"] == 0 and sink.proc.poll() is None
    assert len(error_lines(sink, "")) == 1, sink.log()
    broker.stop()


def test_anonymous_is_refused_and_a_publish_outside_the_acl_vanishes(stack, tmp_path, certs):
    """What the sink can know of the ACL: nothing. MQTT 3.1.1 has no PUBACK error; mosquitto acks and drops."""
    broker = secured(tmp_path, stack, None)
    collector = Collector(broker.port, topic="#", auth=READER)
    outcome = {}
    anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous")
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: outcome.setdefault("anonymous", str(reason))
    anonymous.connect_async("127.0.0.1", broker.port)
    anonymous.loop_start()
    sink_user = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sink-user")
    sink_user.username_pw_set(SINK_USER, SINK_PASSWORD)
    sink_user.connect("127.0.0.1", broker.port)
    sink_user.loop_start()
    try:
        collector.wait(lambda: "anonymous" in outcome, what="anonymous CONNACK")
        assert outcome["anonymous"] == "Not authorized"
        denied = sink_user.publish("facetrack/another-stack/tracks/started", b"{}", qos=1)
        allowed = sink_user.publish(f"facetrack/{stack.stack_id}/tracks/started", b"{}", qos=1)
        denied.wait_for_publish(5)
        allowed.wait_for_publish(5)
        assert denied.is_published() and allowed.is_published()  # both acknowledged alike
        collector.wait(lambda: collector.select(f"{stack.stack_id}/tracks/started"), what="the allowed publish")
        time.sleep(0.3)
        assert not collector.select("another-stack")  # mosquitto logs "Denied PUBLISH" only with log_type debug
    finally:
        for client in (anonymous, sink_user):
            client.disconnect()
            client.loop_stop()
        collector.close()
        broker.stop()


@pytest.mark.parametrize("key", ["password_file", "tls_ca"])
def test_a_missing_file_is_one_start_error_naming_it(stack, tmp_path, key):
    missing = tmp_path / "no-such-file"
    sink = mqtt_sink(stack, 1, f"--set=mqtt.{key}={missing}", "--set=mqtt.username=someone")
    assert sink.proc.wait(15) != 0
    errors = error_lines(sink, "")
    assert len(errors) == 1 and f"mqtt.{key} {missing}: cannot read (No such file or directory)" in errors[0], \
        sink.log()
    assert "Traceback" not in sink.log()


def test_the_broker_fixed_and_reloaded_lets_the_sink_in_without_a_restart(stack, tmp_path, certs):
    """The other fix: the broker's password file is corrected and mosquitto reloaded (SIGHUP)."""
    broker = secured(tmp_path, stack, certs.server("broker"))
    broker.set_password(SINK_USER, "an-old-password")
    broker.reload()
    collector = Collector(broker.port, auth=READER)
    password = tmp_path / "mqtt-password"
    password.write_text(SINK_PASSWORD)
    sink = tls_sink(stack, broker, password, certs.ca)
    try:
        sink.wait_log("refused the connection: Not authorized")
        broker.set_password(SINK_USER, SINK_PASSWORD)
        broker.reload()
        sink.wait_log(r"connected to MQTT broker .* \(connection 1\) after \d+ failed attempts")
        collector.wait(lambda: collector.statuses(stack.stack_id)[-1:] == ["online"], what="status online")
        assert len(error_lines(sink, "")) == 1, sink.log()
    finally:
        collector.close()
        broker.stop()


def test_a_broker_that_wants_a_client_certificate(stack, tmp_path, certs):
    """Without mqtt.tls_cert the broker closes the TLS connection: one ERROR line; with it, events flow."""
    broker = Mosquitto(tmp_path / "mosquitto", users={SINK_USER: SINK_PASSWORD, READER[0]: READER[1]},
                       tls=certs.server("broker"), require_certificate=True).start()
    collector = Collector(broker.port, auth=READER)
    password = tmp_path / "mqtt-password"
    password.write_text(SINK_PASSWORD)
    try:
        bare = tls_sink(stack, broker, password, certs.ca)
        bare.wait_log(r"ERROR .*: closed the connection before accepting it .*client certificate")
        stack.wait_metrics("sink-mqtt", lambda m: m.extra.get("mqtt_failures", 0) >= 3)
        assert len(error_lines(bare, "")) == 1 and bare.stop() == 0, bare.log()
        cert, key = certs.client("sink")
        sink = tls_sink(stack, broker, password, certs.ca, f"--set=mqtt.tls_cert={cert}", f"--set=mqtt.tls_key={key}")
        sink.wait_log(r"connected to MQTT broker .* \(connection 1\)")
        collector.wait(lambda: collector.statuses(stack.stack_id)[-1:] == ["online"], what="status online")
        assert error_lines(sink, "") == []
    finally:
        collector.close()
        broker.stop()
