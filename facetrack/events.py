"""`facetrack events`: every stack's MQTT events, one JSON object per line.

Subscribes to `<prefix>/+/#` on the broker (default: the [mqtt] section of the config), so the
events of every board that publishes to that broker arrive, each line the event's own JSON
payload (it names its `stack`) plus `topic` and, for retained messages (status), `retained`.

  facetrack events                          # every stack, until Ctrl-C
  facetrack events --stack door --stack hall --seconds 60
  facetrack events --host broker.lan --port 1883 --count 10
"""
from __future__ import annotations

import argparse
import json
import sys
import threading

import paho.mqtt.client as mqtt

from common.config import ConfigError, load_config
from services.sinks.mqtt_connect import secure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facetrack events", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="stack config whose [mqtt] names the broker (default: the usual one)")
    parser.add_argument("--host", help="broker host (default: mqtt.host)")
    parser.add_argument("--port", type=int, help="broker port (default: mqtt.port)")
    parser.add_argument("--prefix", help="topic prefix (default: mqtt.topic_prefix)")
    parser.add_argument("--stack", action="append", default=[], help="only this stack id (repeatable)")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: no limit)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config).mqtt
    except ConfigError as exc:
        print(f"facetrack events: {exc}", file=sys.stderr)
        return 2
    host, port = args.host or cfg.host, args.port or cfg.port
    prefix = args.prefix or cfg.topic_prefix
    topics = [f"{prefix}/{s}/#" for s in args.stack] or [f"{prefix}/+/#"]
    done = threading.Event()
    lock = threading.Lock()
    printed = 0

    def on_connect(client, _u, _f, reason, _p):
        if reason.is_failure:
            print(f"facetrack events: broker {host}:{port} refused: {reason}", file=sys.stderr, flush=True)
            return
        for topic in topics:
            client.subscribe(topic, qos=1)
        print(f"facetrack events: subscribed to {', '.join(topics)} on {host}:{port}", file=sys.stderr, flush=True)

    def on_message(_c, _u, msg):
        nonlocal printed
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = {"raw": msg.payload.decode(errors="replace")}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        line = {**payload, "topic": msg.topic}
        if msg.retain:
            line["retained"] = True
        with lock:
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            printed += 1
            if args.count and printed >= args.count:
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=True)
    try:
        secure(client, cfg)  # the [mqtt] user name, password and TLS, as the sink connects
    except OSError as exc:
        print(f"facetrack events: {exc}", file=sys.stderr)
        return 2
    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(0.5, 5)  # type: ignore[arg-type]  # paho's stub says int; it takes seconds as float
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    try:
        done.wait(args.seconds or None)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
