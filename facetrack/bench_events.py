"""`facetrack bench events`: how long a new track takes to reach an MQTT subscriber, one JSON object.

Runs the shipped stack (real supervisord, the sink-mqtt program) on a sequence where a real face
comes and goes (OTB-FaceOcc1-A frames, then grey frames until the track ends, again and again),
so every appearance is a new track, against a mosquitto of its own on a free loopback port
(or --port: a broker already running). For every track the time is taken twice, on the same
host clock: on the bus, the `t_tracked` of the first Tracks message where the id is confirmed;
at an MQTT client subscribed to facetrack/<stack>/tracks/started, the arrival of its event.
The latency is their difference: sink pairing + JSON + MQTT QoS 1 through the broker.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from common.bus import Subscriber
from models.dataset import DATA_DIR
from models.images import read_image
from common.messages import Tracks
from facetrack.bench_pipeline import _free_port, _percentiles
from facetrack.stack import Stack

log = logging.getLogger("bench.events")
SEQ = DATA_DIR / "OTB-FaceOcc1-A"


def come_and_go(out: Path, source: Path, cycles: int, on: int, off: int, fps: float) -> int:
    """A MOT-layout sequence: `on` face frames then `off` grey ones, `cycles` times; returns its length."""
    images = sorted((source / "img1").glob("*.jpg"))
    if not images:
        raise SystemExit(f"facetrack bench events: no images in {source}/img1")
    (out / "img1").mkdir(parents=True)
    grey = out / "grey.jpg"
    first = read_image(images[0])
    cv2.imwrite(str(grey), np.full_like(first, 128))
    n = 0
    for c in range(cycles):
        for i in range(on):
            n += 1
            (out / "img1" / f"{n:06d}.jpg").symlink_to(images[(c * on + i) % len(images)])
        for _ in range(off):
            n += 1
            (out / "img1" / f"{n:06d}.jpg").symlink_to(grey)
    (out / "seqinfo.ini").write_text(f"[Sequence]\nname=come-and-go\nimDir=img1\nframeRate={fps:g}\n"
                                     f"seqLength={n}\nimExt=.jpg\n")
    return n


def start_mosquitto(directory: Path, port: int) -> subprocess.Popen:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise SystemExit("facetrack bench events: mosquitto is missing (Debian package mosquitto), or pass --port")
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise SystemExit(f"facetrack bench events: mosquitto exited with {proc.returncode}")
    return proc


class Arrivals:
    """MQTT client: track_started payloads of one stack with their arrival times."""

    def __init__(self, port: int, stack: str, prefix: str):
        self.items: dict[int, tuple[dict, float]] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        topic = f"{prefix}/{stack}/tracks/started"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=True)

        def on_connect(client, _u, _f, reason, _p):
            client.subscribe(topic, qos=1)
            self.ready.set()

        def on_message(_c, _u, msg):
            at = time.time()
            payload = json.loads(msg.payload)
            with self.lock:
                self.items.setdefault(payload["track_id"], (payload, at))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure(args: argparse.Namespace, tmp: Path) -> dict:
    length = come_and_go(tmp / "seq", args.source, args.tracks, args.on, args.off, args.fps)
    port = args.port or _free_port()
    broker = None if args.port else start_mosquitto(tmp, port)
    stack_id = f"benchev{os.getpid()}"
    overrides = {
        "stack": {"id": stack_id},
        "capture": {"source": str(tmp / "seq"), "width": 0, "height": 0, "loop": False, "fps": args.fps},
        "tracker": {"max_lost_s": args.max_lost_s},
        "sink": {"http_port": _free_port()},
        "mqtt": {"port": port, "metrics_interval_s": 0},
    }
    arrivals = Arrivals(port, stack_id, "facetrack")
    first_tracked: dict[int, float] = {}
    try:
        with Stack(args.run_dir or tmp / "run", overrides, autostart={"capture": False, "sink-mqtt": True}) as stack:
            stack.start(wait_for=("broker", "detector", "tracker", "sink", "sink-mqtt"))
            stack.wait_log("detector", "model loaded")
            stack.wait_log("sink-mqtt", "connected to MQTT broker")
            if not arrivals.ready.wait(10):
                raise SystemExit("facetrack bench events: cannot reach the MQTT broker")
            sub = Subscriber(stack.config.bus.subscribe, [Tracks.TOPIC], hwm=10000)
            time.sleep(1.0)
            log.info("%d frames at %g fps: %d appearances of a face", length, args.fps, args.tracks)
            stack.ctl("start", "capture", check=True)
            deadline = time.monotonic() + length / args.fps * 3 + 30
            while time.monotonic() < deadline:
                msg = sub.recv(timeout_ms=100)
                if isinstance(msg, Tracks):
                    for t in msg.tracks:
                        if t.state == "confirmed":
                            first_tracked.setdefault(t.id, msg.t_tracked)
                if stack.status()["capture"][0] in ("EXITED", "FATAL"):
                    break
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                for msg in sub.drain():
                    for t in msg.tracks:
                        if t.state == "confirmed":
                            first_tracked.setdefault(t.id, msg.t_tracked)
                time.sleep(0.05)
            sub.close()
    finally:
        arrivals.close()
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    with arrivals.lock:
        got = dict(arrivals.items)
    matched = [tid for tid in first_tracked if tid in got]
    to_client = [got[tid][1] - first_tracked[tid] for tid in matched]
    to_publish = [got[tid][0]["t"] - first_tracked[tid] for tid in matched]
    return {
        "tracks_on_bus": len(first_tracked), "events_received": len(got), "matched": len(matched),
        "missing_events": sorted(set(first_tracked) - set(got)),
        "latency_tracked_to_mqtt_client": _percentiles(to_client),
        "latency_tracked_to_sink_publish": _percentiles(to_publish),
        "max_ms": round(max(to_client) * 1000, 2) if to_client else None,
        "frames": length, "fps": args.fps, "broker": "own mosquitto" if broker is not None else f"127.0.0.1:{port}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facetrack bench events", description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=15, help="appearances of the face (each a new track)")
    parser.add_argument("--on", type=int, default=20, help="frames the face is there")
    parser.add_argument("--off", type=int, default=12, help="grey frames between appearances")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--max-lost-s", type=float, default=0.2, help="tracker.max_lost_s: a track ends this soon")
    parser.add_argument("--source", type=Path, default=SEQ, help="a MOT-layout sequence with one face")
    parser.add_argument("--port", type=int, help="use the MQTT broker on 127.0.0.1:PORT (default: start one)")
    parser.add_argument("--run-dir", type=Path, help="keep the stack's run directory here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="facetrack-bench-events-") as tmp:
        result = measure(args, Path(tmp))
    print(json.dumps(result))
    return 0 if result["matched"] else 1


if __name__ == "__main__":
    sys.exit(main())
