"""`facetrack ha remove`: take this stack's entities out of Home Assistant.

Connects with the [mqtt] settings and credentials, subscribes to every config topic of this node
(`<discovery_prefix>/+/<node_id>/+/config`: the fixed entities and every stage sensor found
retained there) and publishes an empty retained message on each, which is how HA's MQTT discovery
removes an entity. Stop the mqtt sink first (or set `home_assistant.enabled: false`, which makes
the sink do the same): a running sink announces its entities again on its next connection.

  facetrack ha remove [--config F] [--set section.key=value ...] [--wait S]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

import paho.mqtt.client as mqtt

from common.config import ConfigError, load_config
from services.sinks import home_assistant as ha
from services.sinks.mqtt_connect import secure


def remove_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facetrack ha remove", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="stack config (default: the usual one)")
    parser.add_argument("--set", action="append", default=[], help="section.key=value override (repeatable)")
    parser.add_argument("--wait", type=float, default=1.0,
                        help="seconds without a new retained config before clearing (default 1)")
    parser.add_argument("--timeout", type=float, default=15.0, help="give up after this long (default 15 s)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"facetrack ha remove: {exc}", file=sys.stderr)
        return 2
    m = cfg.mqtt
    broker = f"{m.host}:{m.port}"
    pattern = ha.node_config_filter(cfg)
    found = set(ha.entity_configs(cfg))  # the fixed ones are cleared even if the broker lost them
    subscribed, refused = threading.Event(), []
    last = [time.monotonic()]

    def on_connect(client, _u, _f, reason, _p):
        if reason.is_failure:
            refused.append(str(reason))
            client.disconnect()
            return
        client.subscribe(pattern, qos=1)

    def on_subscribe(_c, _u, _mid, _codes, _p):
        last[0] = time.monotonic()
        subscribed.set()

    def on_message(_c, _u, msg):
        if msg.payload:
            found.add(msg.topic)
            last[0] = time.monotonic()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-ha-remove", clean_session=True)
    try:
        secure(client, m)
    except OSError as exc:
        print(f"facetrack ha remove: {exc}", file=sys.stderr)
        return 2
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive_s)
    except OSError as exc:
        print(f"facetrack ha remove: MQTT broker {broker}: cannot connect ({exc})", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        deadline = time.monotonic() + args.timeout
        while not subscribed.is_set() and not refused and time.monotonic() < deadline:
            time.sleep(0.05)
        if not subscribed.is_set():
            why = f"refused the connection: {refused[0]}" if refused else "no subscription acknowledged"
            print(f"facetrack ha remove: MQTT broker {broker}: {why}", file=sys.stderr)
            return 1
        while time.monotonic() - last[0] < args.wait and time.monotonic() < deadline:
            time.sleep(0.05)  # retained configs arrive right after the SUBACK
        sent = [client.publish(topic, b"", qos=1, retain=True) for topic in sorted(found)]
        for info in sent:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        print(f"facetrack ha remove: cleared {len(found)} discovery configs of node {ha.node_id(cfg)} "
              f"on {broker}", file=sys.stderr)
        return 0 if all(info.is_published() for info in sent) else 1
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(remove_main())
