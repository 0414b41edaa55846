"""Operating a running stack under real supervisord on the demo clip.

One stack for the module (the detector's model takes a while to load on a busy machine);
the tests run in file order and each leaves the stack running, the last shuts it down:
  a third-party sink (examples/minimal_sink.py) reads real frames and tracks;
  kill -9 of each service: the others keep running, supervisord restarts it, frames reach
  the sink again (recovery times printed);
  a hung detector (SIGSTOP) is killed by the watchdog through supervisord, with back-off;
  a sink that stops reading never slows the tracker, its drops are counted, it is reported silent;
  after `supervisorctl shutdown` no shared-memory segment and no ipc socket is left.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.bus import Subscriber
from common.config import ROOT
from common.frame_ring import RingReader
from common.messages import Frame, Tracks
from facetrack.monitor import render
from facetrack.stack import Stack
from stack_support import PIPELINE, MetricsWatch, get_json, leftovers, pids, unique_id, wait_for

INTERVAL = 0.5
DEADLINE = 3.0


class Ops:
    def __init__(self, stack: Stack, url: str):
        self.stack, self.url = stack, url
        self.watch = MetricsWatch(stack)

    def sink_record_after(self, t: float) -> dict | None:
        """The live view's newest record if its frame was captured after `t`."""
        record = get_json(self.url + "tracks.json")
        return record if record and record["t_capture"] > t else None


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    import socket
    with socket.socket() as s, socket.socket() as p:
        s.bind(("127.0.0.1", 0))
        p.bind(("127.0.0.1", 0))
        port, prometheus_port = s.getsockname()[1], p.getsockname()[1]
    run_dir = tmp_path_factory.mktemp("ops")
    overrides = {
        "stack": {"id": unique_id("ops", run_dir)},
        "capture": {"source": "demo://"},
        "sink": {"http_port": port},
        "monitor": {"interval_s": INTERVAL, "prometheus_port": prometheus_port},
        "detector": {"deadline_s": DEADLINE},
        "watchdog": {"backoff_s": 60.0, "backoff_max_s": 120.0},
    }
    stack = Stack(run_dir, overrides)
    stack.start(wait_for=PIPELINE, timeout=90)
    ops = Ops(stack, f"http://127.0.0.1:{port}/")
    ops.prometheus = f"http://127.0.0.1:{prometheus_port}/metrics"
    ops.watch.wait("detector", lambda m: m.frames_out > 0, timeout=120)  # the model is loaded
    yield ops
    for pid in pids(stack).values():  # nothing stays stopped by a failed test
        os.kill(pid, signal.SIGCONT)
    ops.watch.close()
    stack.shutdown()


def test_watchdog_exports_every_stage_for_prometheus_with_no_viewer_asked(ops):
    """The watchdog's exporter, not a viewer, serves the whole stack's metrics (prometheus_client's parser reads them)."""
    def scrape() -> dict:
        with urllib.request.urlopen(ops.prometheus, timeout=5) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = reply.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    wait_for(lambda: all(("facetrack_up", (("service", s),)) in scrape() for s in ("capture", "tracker", "detector")),
             30, what="every stage in the exporter")
    samples = scrape()
    for service in ("capture", "tracker", "detector", "watchdog"):
        assert samples[("facetrack_up", (("service", service),))] == 1
        assert samples[("facetrack_frames_out_total", (("service", service),))] > 0
    assert samples[("facetrack_latency_ms", (("path", "capture_to_tracked"), ("quantile", "0.99"),
                                             ("service", "tracker")))] > 0


def test_minimal_third_party_sink_reads_real_frames_and_tracks(ops):
    stack = ops.stack
    bus, shm = stack.config.bus.subscribe, stack.config.ring.shm_dir
    sub = Subscriber(bus, [Frame.TOPIC, Tracks.TOPIC], hwm=100000)
    reader = RingReader(stack.config.ring_name, shm)
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "minimal_sink.py"), bus, shm],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    theirs: dict[int, dict] = {}

    def read():
        for line in proc.stdout:
            r = json.loads(line)
            theirs[r["frame_id"]] = r

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    means, tracks = {}, {}
    end = time.monotonic() + 8
    while time.monotonic() < end:
        msg = sub.recv(timeout_ms=200)
        if isinstance(msg, Frame):
            image = reader.read(msg)
            if image is not None:
                means[msg.frame_id] = float(image.mean())
        elif isinstance(msg, Tracks):
            tracks[msg.frame_id] = [[t.id, t.box, t.state] for t in msg.tracks]
    proc.terminate()
    proc.wait(timeout=10)
    thread.join(timeout=5)
    sub.close()
    reader.close()
    common = sorted(set(theirs) & set(means) & set(tracks))
    assert len(common) >= 30, (len(theirs), len(means), proc.stderr.read()[-2000:])
    for k in common:
        assert abs(theirs[k]["mean"] - means[k]) < 1e-6, k  # the very pixels of that frame
        assert theirs[k]["tracks"] == tracks[k]
    assert any(t[2] == "confirmed" for k in common for t in theirs[k]["tracks"]), "no face tracked"
    print(f"minimal sink: {len(theirs)} frames printed, {len(common)} compared")


def test_kill9_of_each_service_is_restarted_and_frames_reach_the_sink_again(ops):
    stack, watch = ops.stack, ops.watch
    assert wait_for(lambda: ops.sink_record_after(time.time() - 1), 30, what="frames at the sink")
    recovery = {}
    for program in PIPELINE:
        before = pids(stack)
        assert set(PIPELINE) <= set(before), stack.status()
        old = before[program]
        t_kill = time.time()
        os.kill(old, signal.SIGKILL)
        seen = {}

        def recovered():
            now = time.time()
            if "pid" not in seen and (p := pids(stack).get(program)) not in (None, old):
                seen["pid"], seen["t_running"] = p, now
            if "t_sink" not in seen and ops.sink_record_after(t_kill):
                seen["t_sink"] = now
            return "pid" in seen and "t_sink" in seen

        wait_for(recovered, 60, what=f"{program} restarted and frames at the sink")
        new = seen["pid"]
        if program in ("detector", "watchdog"):  # the restarted process works, not only runs
            watch.wait(program, lambda m: m.pid == new and (m.frames_out > 0 or program == "watchdog"), timeout=120)
        t_flow = time.time()
        now = pids(stack)
        others = {p: pid for p, pid in before.items() if p != program}
        assert {p: now.get(p) for p in others} == others, f"killing {program} took others down: {now}"
        recovery[program] = {"running_s": round(seen["t_running"] - t_kill, 2),
                             "frames_at_sink_s": round(seen["t_sink"] - t_kill, 2),
                             "working_s": round(t_flow - t_kill, 2)}
    print("RECOVERY " + json.dumps(recovery))


def test_watchdog_kills_a_hung_detector_through_supervisord_with_backoff(ops):
    stack, watch = ops.stack, ops.watch
    old = pids(stack)["detector"]
    watch.wait("detector", lambda m: m.pid == old and m.frames_out > 0, timeout=120)
    t_stop = time.time()
    os.kill(old, signal.SIGSTOP)  # a real hang: the process is there, RUNNING, and does nothing
    new = wait_for(lambda: (p := pids(stack).get("detector")) != old and p, 60, what="hung detector restarted")
    t_restart = time.time()
    watch.wait("detector", lambda m: m.pid == new and m.frames_out > 0, timeout=120)
    t_ok = time.time()
    log = stack.log("watchdog")
    hung = [line for line in log.splitlines() if f"detector hung: pid {old} " in line]
    assert len(hung) == 1 and "killing it through supervisord" in hung[0], log[-3000:]
    assert t_restart - t_stop >= DEADLINE
    print(f"WATCHDOG hung detector restarted {t_restart - t_stop:.1f} s after SIGSTOP (deadline {DEADLINE} s), "
          f"detecting again after {t_ok - t_stop:.1f} s")

    # hung again right away: back-off (60 s) defers the restart; it recovers on its own here
    os.kill(new, signal.SIGSTOP)
    wait_for(lambda: "restart deferred" in stack.log("watchdog"), 30, what="deferred restart")
    assert pids(stack)["detector"] == new
    t_cont = time.time()
    os.kill(new, signal.SIGCONT)
    watch.wait("detector", lambda m: m.pid == new and m.t > t_cont, timeout=30)
    wait_for(lambda: "stage detector reporting again" in stack.log("watchdog"), 10, what="reporting again")
    m = watch.wait("watchdog", lambda m: m.t > t_cont + 2 * INTERVAL, timeout=30)
    assert m.extra["restarts"] >= 1 and m.extra["silent_stages"] == 0


def test_a_stopped_sink_never_slows_the_tracker_counts_its_drops_and_is_reported_silent(ops):
    stack, watch = ops.stack, ops.watch
    stack.ctl("start", "sink-recorder", check=True)
    watch.wait("sink-recorder", lambda m: m.frames_out > 10, timeout=60)
    sub = Subscriber(stack.config.bus.subscribe, [Frame.TOPIC, Tracks.TOPIC], hwm=100000)

    def tracked_fraction(seconds: float) -> tuple[float, int]:
        sub.drain()
        frames, tracked = set(), set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = sub.recv(timeout_ms=100)
            if isinstance(msg, Frame):
                frames.add(msg.frame_id)
            elif isinstance(msg, Tracks):
                tracked.add(msg.frame_id)
        return len(tracked & frames) / max(1, len(frames)), len(frames)

    before, n_before = tracked_fraction(4)
    recorder = pids(stack)["sink-recorder"]
    dropped_before = watch.get("sink-recorder").dropped
    os.kill(recorder, signal.SIGSTOP)
    t_stop = time.time()
    during, n_during = tracked_fraction(3 * INTERVAL * 3 + 2)
    # the watchdog reports it: a log line, and a flag in its metrics; the monitor shows SILENT
    wait_for(lambda: "stage sink-recorder silent" in stack.log("watchdog"), 20, what="silent report")
    m = watch.wait("watchdog", lambda m: m.extra.get("silent_sink-recorder") == 1, timeout=20)
    assert m.extra["silent_stages"] >= 1
    table = render(watch.poll(), silent_after=3 * INTERVAL)
    assert any(line.split()[0] == "sink-recorder" and line.split()[-1] == "SILENT" for line in table.splitlines()[1:-1]), table
    os.kill(recorder, signal.SIGCONT)
    t_cont = time.time()
    rec = watch.wait("sink-recorder", lambda m: m.t > t_cont + INTERVAL, timeout=30)
    sub.close()
    print(f"tracker: {before:.3f} of {n_before} frames tracked before, {during:.3f} of {n_during} while the "
          f"recorder was stopped {t_cont - t_stop:.1f} s; recorder dropped {rec.dropped - dropped_before} "
          f"(gap {rec.extra.get('gap')}, stale {rec.extra.get('stale')})")
    assert rec.dropped > dropped_before  # what it missed is counted
    assert n_during > 0 and during > 0  # the tracker kept publishing (its pace under load: bench pipeline)
    assert pids(stack)["sink-recorder"] == recorder  # it was slow, not dead: no restart
    stack.ctl("stop", "sink-recorder")


def test_shutdown_leaves_no_shared_memory_segment_or_socket(ops):
    stack = ops.stack
    assert any(p.startswith("/dev/shm/") for p in leftovers(stack))  # the ring exists while it runs
    ops.watch.close()
    stack.shutdown()
    assert stack.proc.poll() is not None
    assert leftovers(stack) == []
