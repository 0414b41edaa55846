"""The jsonl and privacy sink kinds, `facetrack sink`, names from the identity service, and the
live view's Prometheus `/metrics`.

The test plays capture and tracker on real face frames (sink_support.py harness): track 1
lies on the gt head box, track 7 (lost) in the top-left corner.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from common.config import SinkConfig
from common.messages import Identity, Latency, Metrics
from services.sinks.drawing import label_of
from services.sinks.privacy import blur_faces, blur_region
from sink_support import ROOT, get_json, http_get

MARGIN, BLOCKS = SinkConfig().privacy_margin, SinkConfig().privacy_blocks  # the defaults


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_jsonl_sink_writes_every_frame_with_its_tracks_on_stdout(stack):
    sink = stack.sink("--kind", "jsonl")
    stack.publish_until(lambda: len(json_lines(sink.log())) > 0)
    stack.publish_n(30)
    stack.wait_metrics("sink-jsonl", lambda m: m.frames_out + m.dropped >= stack.next_id - 1 - json_lines(sink.log())[0]["frame_id"])
    records = json_lines(sink.log())
    first = records[0]["frame_id"]
    assert [r["frame_id"] for r in records] == list(range(first, first + len(records)))  # every frame, in order
    assert len(records) >= 30
    for r in records:
        frame, tracks = stack.sent[r["frame_id"]]
        assert r["t_capture"] == tracks.t_capture and r["source_pos"] == frame.source_pos
        assert [(t["id"], t["box"], t["state"]) for t in r["tracks"]] == [(t.id, t.box, t.state) for t in tracks.tracks]
    assert sink.stop() == 0


def test_facetrack_sink_command_attaches_a_jsonl_sink_and_stops_when_the_pipe_closes(stack):
    """`facetrack sink jsonl | head -n 3`: three JSON lines on stdout, logs on stderr, clean exit."""
    code = "import sys; from facetrack.sink_cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "jsonl", *stack.overrides], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []

    def read_three():
        for _ in range(3):
            line = proc.stdout.readline()
            if line:
                lines.append(json.loads(line))
        proc.stdout.close()  # the reader goes away, like `head` would

    reader = threading.Thread(target=read_three, daemon=True)
    reader.start()
    with stack.publishing(fps=30):
        reader.join(timeout=20)
        end = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
    assert proc.wait(timeout=15) == 0
    assert len(lines) == 3 and all("tracks" in r for r in lines)
    assert b"stdout closed" in proc.stderr.read()
    proc.stderr.close()


def test_blur_faces_changes_only_the_grown_boxes():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = blur_faces(image.copy(), [[40, 30, 80, 90], [-20, -20, 10, 10], [150, 100, 400, 400]], MARGIN, BLOCKS)
    mask = np.zeros(image.shape[:2], bool)
    for box in ([40, 30, 80, 90], [-20, -20, 10, 10], [150, 100, 400, 400]):
        x1, y1, x2, y2 = blur_region(160, 120, box, MARGIN)
        mask[y1:y2, x1:x2] = True
    assert np.array_equal(out[~mask], image[~mask])
    x1, y1, x2, y2 = blur_region(160, 120, [40, 30, 80, 90], MARGIN)
    assert (x1, y1, x2, y2) == (32, 18, 88, 102)  # grown by sink.privacy_margin (0.2) of 40x60 on each side
    assert out[y1:y2, x1:x2].std() < 0.2 * image[y1:y2, x1:x2].std()


def sharpness(pixels: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_privacy_view_blurs_the_faces_and_leaves_the_background(stack):
    sink = stack.sink("--kind", "privacy", "--port", "0")
    url = sink.url()
    stack.publish_until(lambda: get_json(url + "tracks.json") is not None)
    pos = 25
    with stack.publishing(fps=20, pos=pos):  # the same frame over and over: the snapshot is of frame `pos`
        time.sleep(1.0)
        status, body, ctype = http_get(url + "snapshot.jpg")
    assert status == 200 and ctype == "image/jpeg"
    shown = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    original = stack.images[pos]
    h, w = original.shape[:2]
    face = [int(round(v)) for v in stack.gt[pos]]
    fx1, fy1, fx2, fy2 = face
    # the face: its detail is gone (JPEG alone keeps most of it)
    assert sharpness(shown[fy1:fy2, fx1:fx2]) < 0.1 * sharpness(original[fy1:fy2, fx1:fx2])
    assert np.abs(shown[fy1:fy2, fx1:fx2].astype(int) - original[fy1:fy2, fx1:fx2]).mean() > 5
    # the background: what JPEG quality 80 leaves of it, no boxes and no labels drawn
    mask = np.ones((h, w), bool)
    for box in (stack.gt[pos], [10.0, 10.0, 60.0, 50.0]):
        x1, y1, x2, y2 = blur_region(w, h, box, MARGIN)
        mask[max(0, y1 - 8):y2 + 8, max(0, x1 - 8):x2 + 8] = False
    diff = np.abs(shown.astype(int) - original)[mask]
    assert diff.mean() < 3.0 and np.percentile(diff, 99) < 25, (diff.mean(), np.percentile(diff, 99))
    record = get_json(url + "tracks.json")
    assert record["source_pos"] == pos and [t["id"] for t in record["tracks"]] == [1, 7]
    m = stack.wait_metrics("sink-privacy", lambda m: m.extra.get("faces_blurred", 0) > 0)
    assert m.errors == 0
    assert sink.stop() == 0


def test_identity_names_reach_the_jsonl_and_live_sinks_but_not_the_privacy_view(stack):
    """The identity service names track 1: jsonl and the live view carry the name from then
    on (track 7, never named, has none); the privacy view never shows who anyone is."""
    jsonl = stack.sink("--kind", "jsonl")
    live = stack.sink("--kind", "live", "--port", "0")
    privacy = stack.sink("--kind", "privacy", "--port", "0")
    urls = live.url(), privacy.url()
    stack.publish_until(lambda: all(get_json(u + "tracks.json") is not None for u in urls)
                        and json_lines(jsonl.log()))

    def named() -> bool:
        stack.publisher.send(Identity(track_id=1, frame_id=stack.next_id - 1, name="Ada", distance=0.31,
                                      t=time.time()))
        return any(t.get("name") == "Ada" for t in get_json(urls[0] + "tracks.json")["tracks"])

    stack.publish_until(named)
    stack.publish_n(10)
    live_tracks = {t["id"]: t for t in get_json(urls[0] + "tracks.json")["tracks"]}
    assert live_tracks[1]["name"] == "Ada" and "name" not in live_tracks[7]
    last = json_lines(jsonl.log())[-1]["tracks"]
    assert [t.get("name") for t in last] == ["Ada", None]
    assert all("name" not in t for t in get_json(urls[1] + "tracks.json")["tracks"])
    for sink in (jsonl, live, privacy):
        assert sink.stop() == 0


def test_labels_carry_known_names_only():
    from common.messages import Track

    confirmed, lost = Track(3, [0, 0, 9, 9], 0.9, "confirmed", 5), Track(4, [0, 0, 9, 9], 0.9, "lost", 5)
    assert label_of(confirmed) == "id 3" and label_of(confirmed, "unknown") == "id 3"
    assert label_of(confirmed, "Ada") == "id 3 Ada" and label_of(lost, "Bo") == "id 4 Bo (lost)"


def test_live_view_serves_every_stage_metrics_in_prometheus_format(stack):
    sink = stack.sink("--kind", "live", "--port", "0")
    url = sink.url()
    stack.publish_until(lambda: get_json(url + "tracks.json") is not None)
    # another stage's metrics, with a latency window, a NaN and a label value that needs escaping
    for service in ("detector", 'odd "name"\\\nx'):
        stack.publisher.send(Metrics(service=service, pid=4242, t=time.time(), frames_in=10, frames_out=7, fps=2.5,
                                     p50_ms=31.0, p99_ms=44.0, dropped=3, errors=1, cpu_percent=55.0, rss_bytes=123456,
                                     extra={"skipped": 12, "weird": float("nan")},
                                     latency_ms={"capture_to_detected": Latency(40.5, 61.0)}))
    stack.publish_until(lambda: all(f'service="{s}"'.encode() in http_get(url + "metrics")[1]
                                    for s in ("detector", "sink-live")), timeout=15)
    stack.publish_n(10)
    status, body, ctype = http_get(url + "metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("facetrack_frames_out_total", service="detector") == 7
    assert value("facetrack_dropped_total", service="detector") == 3
    assert value("facetrack_stage_ms", service="detector", quantile="0.99") == 44.0
    assert value("facetrack_latency_ms", service="detector", path="capture_to_detected", quantile="0.5") == 40.5
    assert value("facetrack_extra", service="detector", key="skipped") == 12
    assert math.isnan(value("facetrack_extra", service="detector", key="weird"))
    assert value("facetrack_up", service="detector") == 1
    assert value("facetrack_rss_bytes", service='odd "name"\\\nx') == 123456
    # the sink's own metrics: frames out, and its capture->sink latency percentiles
    assert value("facetrack_frames_out_total", service="sink-live") > 0
    assert value("facetrack_latency_ms", service="sink-live", path="capture_to_sink", quantile="0.99") >= 0
    assert ("facetrack_extra", (("key", "queue_depth_max"), ("service", "sink-live"))) in samples
    assert sink.stop() == 0
