"""Whole stacks on one real mosquitto: track events against the recording, two boards, `facetrack events`.

Two stacks (their own ids, run directories and supervisord) run the shipped programs with the
sink-mqtt and sink-recorder sinks on the first frames of a real sequence, and publish to one
broker. `facetrack events` (a subprocess, subscribed to facetrack/+/#) must print the events
of both, and each stack's track_started events must be exactly its recorded tracks: the same
ids, each on the frame (and with the t_tracked) of the first recorded frame that confirms it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from common.config import ROOT
from facetrack.stack import Stack
from mqtt_support import Collector, Mosquitto, free_port
from test_remote_detector import first_confirmed, sequence_prefix

FRAMES = 100
PROGRAMS = ("broker", "detector", "tracker", "sink", "sink-recorder", "sink-mqtt")


@pytest.mark.slow  # two whole stacks, two models loading: about a minute here
def test_two_stacks_one_broker_events_match_the_recordings(tmp_path):
    seq = sequence_prefix(tmp_path, FRAMES)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    collector = Collector(broker.port, persistent=False)
    stacks = []
    events_out = tmp_path / "events.jsonl"
    events = None
    try:
        for name in ("door", "hall"):
            stacks.append(Stack(tmp_path / name, {
                "stack": {"id": f"{name}{os.getpid()}"},
                "capture": {"source": str(seq), "width": 0, "height": 0, "loop": False, "fps": 10},
                "sink": {"http_port": free_port()},
                "mqtt": {"port": broker.port, "metrics_interval_s": 1.0},
            }, autostart={"capture": False, "sink-recorder": True, "sink-mqtt": True}))
        for stack in stacks:
            stack.start(wait_for=PROGRAMS)
        for stack in stacks:
            stack.wait_log("detector", "model loaded")
            stack.wait_log("sink-mqtt", "connected to MQTT broker")
        with open(events_out, "w") as out:
            events = subprocess.Popen([sys.executable, "-m", "facetrack.events", "--port", str(broker.port),
                                       "--seconds", "180"], cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True)
        assert "subscribed to facetrack/+/#" in events.stderr.readline()
        time.sleep(1.0)  # subscriptions reach the proxies before the first frame
        for stack in stacks:
            stack.ctl("start", "capture", check=True)
        deadline = time.monotonic() + 120
        for stack in stacks:
            while stack.status()["capture"][0] not in ("EXITED", "FATAL") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert stack.status()["capture"][0] == "EXITED", stack.log("capture")[-2000:]
        time.sleep(2.0)  # the last tracks reach the sinks, the events the broker
        lines = [json.loads(line) for line in events_out.read_text().splitlines()]
        for stack in stacks:
            sid = stack.config.stack.id
            mine = [e for e in lines if e.get("stack") == sid]
            assert any(e["event"] == "status" and e["state"] == "online" for e in mine), mine[:5]
            assert any(e["event"] == "metrics" and e["service"] == "tracker" for e in mine)
            started = {e["track_id"]: e for e in mine if e["event"] == "track_started"}
            recorded = first_confirmed(stack.run_dir)
            assert started, stack.log("sink-mqtt")[-2000:]
            assert set(started) == set(recorded), (sorted(started), sorted(recorded))
            for tid, e in started.items():
                assert e["topic"] == f"facetrack/{sid}/tracks/started" and e["v"] == 1
                assert (e["frame_id"], e["t_tracked"]) == (recorded[tid]["frame_id"], recorded[tid]["t_tracked"])
            latency = [at - p["t_tracked"] for p, at in collector.timed("/tracks/started") if p["stack"] == sid]
            print(f"{sid}: {len(started)} tracks started, ids {sorted(started)}; "
                  f"t_tracked -> MQTT client {', '.join(f'{1000 * v:.1f}' for v in latency)} ms")
    finally:
        if events is not None:
            events.terminate()
            events.wait(10)
        for stack in stacks:
            stack.shutdown()
        collector.close()
        broker.stop()
    statuses = [e.get("state") for e in map(json.loads, events_out.read_text().splitlines()) if e.get("event") == "status"]
    assert statuses.count("online") >= 2
