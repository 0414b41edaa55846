"""Malformed and fuzzed messages at every subscriber of a running stack (real supervisord).

Hypothesis generates messages on the real topics (and topics that begin like them, which a
SUB socket's prefix match also delivers): bytes that are not msgpack, msgpack that is not a
map, valid messages with a wrong version, a field missing, a field of the wrong type, an
unknown field, impossible values (a box of 3 numbers, NaN, detect_every 0, slot -1), one or
three message parts. Each one is checked locally to fail `decode()`, then sent. Every
subscriber must count each one it was sent (Metrics.errors), log them in a few summary
lines (not one line each), keep running, and go on processing the good messages.

The stack runs with a large high-water mark so that ZMQ itself drops nothing: every
message sent reaches every subscriber whose topics match it, and the counts are exact.
"""
from __future__ import annotations

import re
import socket
import time

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from common.messages import MessageError, decode
from facetrack.stack import Stack
from stack_support import PIPELINE, MetricsWatch, pids, unique_id

# 10 000 at each subscriber: frame+tracks, frame+detections, metrics (hypothesis generates
# about 100 messages a second here, so this one is @slow); CI sends a tenth of it.
PER_FAMILY = {b"frame": 5000, b"tracks": 5000, b"detections": 5000, b"metrics": 10000}
# which topic prefixes each subscriber of the stack asked for (services' own code)
SUBSCRIPTIONS = {"detector": (b"frame", b"tracks"), "tracker": (b"frame", b"detections"),
                 "sink-live": (b"frame", b"tracks", b"metrics"), "sink-recorder": (b"frame", b"tracks"),
                 "watchdog": (b"metrics",)}

numbers = st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True))
box = st.lists(st.floats(-1e4, 1e4), min_size=4, max_size=4)
valid_bodies = {
    b"frame": st.fixed_dictionaries({
        "stack": st.text(max_size=8), "frame_id": st.integers(0, 2**31), "slot": st.integers(0, 64),
        "seq": st.integers(0, 2**40), "ring_id": st.integers(0, 2**62), "t_capture": st.floats(0, 2e9),
        "width": st.integers(1, 4000), "height": st.integers(1, 4000), "source_pos": st.integers(0, 2**31),
        "fmt": st.just("bgr24"), "v": st.just(1)}),
    b"tracks": st.fixed_dictionaries({
        "frame_id": st.integers(0, 2**31), "t_capture": st.floats(0, 2e9), "t_tracked": st.floats(0, 2e9),
        "tracks": st.lists(st.fixed_dictionaries({"id": st.integers(0, 99), "box": box, "score": st.floats(0, 1),
                                                  "state": st.sampled_from(["confirmed", "lost"])}), max_size=3),
        "detect_every": st.integers(1, 10), "detected": st.booleans(), "v": st.just(1)}),
    b"detections": st.integers(0, 3).flatmap(lambda n: st.fixed_dictionaries({
        "frame_id": st.integers(0, 2**31), "t_capture": st.floats(0, 2e9), "t_in": st.floats(0, 2e9),
        "t_out": st.floats(0, 2e9), "boxes": st.lists(box, min_size=n, max_size=n),
        "scores": st.lists(st.floats(0, 1), min_size=n, max_size=n),
        "keypoints": st.lists(st.lists(st.lists(st.floats(0, 999), min_size=2, max_size=2), min_size=6, max_size=6),
                              min_size=n, max_size=n), "v": st.just(1)})),
    b"metrics": st.fixed_dictionaries({
        "service": st.text(max_size=12), "pid": st.integers(0, 2**22), "t": st.floats(0, 2e9),
        "frames_in": st.integers(0, 2**40), "frames_out": st.integers(0, 2**40), "fps": st.floats(0, 1e3),
        "p50_ms": st.floats(0, 1e4), "p99_ms": st.floats(0, 1e4), "dropped": st.integers(0, 2**40),
        "errors": st.integers(0, 2**40), "cpu_percent": st.floats(0, 800), "rss_bytes": st.integers(0, 2**40),
        "extra": st.dictionaries(st.text(max_size=8), numbers, max_size=3), "v": st.just(1)}),
}
garbage = st.recursive(st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8), st.binary(max_size=8)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=8)


def spoil(body: dict, how: str, data) -> dict:
    body = dict(body)
    keys = sorted(body)
    if how == "version":
        body["v"] = data.draw(st.one_of(st.integers(2, 99), st.integers(-99, 0), st.text(max_size=3), st.none()))
    elif how == "missing":
        del body[data.draw(st.sampled_from([k for k in keys if k not in ("v", "fmt", "detect_every", "detected")]))]
    elif how == "wrong_type":
        body[data.draw(st.sampled_from([k for k in keys if k != "v"]))] = data.draw(st.one_of(st.none(), st.binary(max_size=4)))
    elif how == "unknown_field":
        body[data.draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in body))] = data.draw(garbage)
    elif how == "impossible":
        if "boxes" in body:
            body["boxes"] = [[1.0, 2.0, 3.0]] + body["boxes"]
        elif "tracks" in body:
            body["detect_every"] = data.draw(st.integers(-5, 0))
        elif "slot" in body:
            body["slot"] = data.draw(st.integers(-100, -1))
        else:
            body["fps"] = "fast"
    return body


@st.composite
def fuzzed(draw, family: bytes) -> list[bytes]:
    how = draw(st.sampled_from(["bytes", "not_a_map", "version", "missing", "wrong_type", "unknown_field",
                                "impossible", "parts", "topic"]))
    if how == "bytes":
        return [family, draw(st.binary(max_size=64))]
    if how == "not_a_map":
        return [family, msgpack.packb(draw(garbage.filter(lambda v: not isinstance(v, dict))), use_bin_type=True)]
    body = draw(valid_bodies[family])
    if how == "parts":
        packed = msgpack.packb(body, use_bin_type=True)
        return draw(st.sampled_from([[family], [family, packed, packed], [family, b"", packed]]))
    if how == "topic":  # begins like a real topic, so the prefix match delivers it
        return [family + draw(st.binary(min_size=1, max_size=8)), msgpack.packb(body, use_bin_type=True)]
    return [family, msgpack.packb(spoil(body, how, draw(st.data())), use_bin_type=True)]


def generate(per_family: dict[bytes, int]) -> tuple[dict[bytes, list[list[bytes]]], int]:
    """`per_family[f]` hypothesis-generated messages of family f that `decode()` rejects."""
    pool: dict[bytes, list[list[bytes]]] = {}
    skipped = 0
    for family, target in per_family.items():
        out = pool[family] = []

        @settings(max_examples=int(target * 1.5) + 50, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(fuzzed(family))
        def collect(parts):
            nonlocal skipped
            if len(out) >= target:
                return
            if is_malformed(parts):
                out.append(parts)
            else:
                skipped += 1

        collect()
        assert len(out) == target, (family, len(out))
    return pool, skipped


def is_malformed(parts: list[bytes]) -> bool:
    try:
        decode(parts)
    except MessageError:
        return True
    return False


@pytest.mark.parametrize("share", [pytest.param(1.0, marks=pytest.mark.slow, id="10000-each"),
                                   pytest.param(0.1, id="1000-each")])
def test_fuzzed_messages_are_counted_logged_briefly_and_good_ones_still_flow(tmp_path, share):
    per_family = {family: int(n * share) for family, n in PER_FAMILY.items()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = {"stack": {"id": unique_id("fuzz", tmp_path)}, "capture": {"source": "demo://"},
                 "sink": {"http_port": port}, "monitor": {"interval_s": 0.5}, "detector": {"deadline_s": 30.0},
                 "bus": {"hwm": 200000}}
    pool, skipped_valid = generate(per_family)  # before the stack starts: it needs the CPU
    with Stack(tmp_path / "run", overrides, autostart={"sink-recorder": True}) as stack:
        stack.start(wait_for=(*PIPELINE, "sink-recorder"), timeout=90)
        watch = MetricsWatch(stack)
        watch.wait("detector", lambda m: m.frames_out > 0, timeout=120)
        for service in SUBSCRIPTIONS:
            watch.wait(service, lambda m: True, timeout=30)
        before = {s: watch.get(s) for s in SUBSCRIPTIONS}
        pids_before = pids(stack)

        pub = zmq.Context.instance().socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.connect(stack.config.bus.publish)
        time.sleep(1.0)  # the proxy has our connection before the first message
        sent = {family: 0 for family in per_family}
        t_fuzz = time.time()
        for family, messages in pool.items():
            for i, parts in enumerate(messages):
                pub.send_multipart(parts)
                sent[family] += 1
                if i % 50 == 49:
                    time.sleep(0.005)  # a steady stream, not one burst
        pub.close(linger=5000)
        t_sent = time.time()

        expected = {s: sum(n for fam, n in sent.items() if fam in topics) for s, topics in SUBSCRIPTIONS.items()}
        for service, n in expected.items():
            m = watch.wait(service, lambda m: m.errors - before[service].errors >= n, timeout=90)
            time.sleep(1.0)
            m = watch.get(service)
            assert m.errors - before[service].errors == n, (service, m.errors - before[service].errors, n)
        # good messages after the fuzz: new frames reach the sinks, the detector detects
        for service in ("detector", "tracker", "sink-live", "sink-recorder"):
            old = watch.get(service).frames_out
            watch.wait(service, lambda m: m.frames_out > old and m.t > t_sent, timeout=60)
        assert pids(stack) == pids_before, "a service restarted"
        lines = {}
        for program, service in (("detector", "detector"), ("tracker", "tracker"), ("sink", "sink-live"),
                                 ("sink-recorder", "sink-recorder"), ("watchdog", "watchdog")):
            log = stack.log(program)
            assert "Traceback" not in log, log[-3000:]
            malformed = [line for line in log.splitlines() if "malformed" in line]
            totals = [int(m.group(1)) for line in malformed if (m := re.search(r"\((\d+) in all\)", line))]
            lines[service] = len(malformed)
            # a few summary lines (one per 5 s at most, plus the first), and they add up to the count
            assert len(malformed) <= 3 + (time.time() - t_fuzz) / 5, malformed[:5]
            assert totals and totals[-1] >= expected[service] - 50, malformed[-3:]
        print(f"FUZZ sent {sum(sent.values())} malformed messages {sent} (skipped {skipped_valid} generated ones that decoded); "
              f"counted per subscriber {expected}; log lines {lines}; {t_sent - t_fuzz:.1f} s to send")
        watch.close()
