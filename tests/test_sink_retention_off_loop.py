"""Retention never stalls a sink's frame loop: the prune runs in a thread of its own.

A walk of an SD card with months of files takes seconds; here the prune is held mid-walk (it
waits on an event the test controls, standing in for that slow walk) and the real sink loop,
with a real jsonl sink writing its files under the record directory, must go on handling every
frame meanwhile. Before, the loop pruned inside its own turn and would wait with it.
"""
from __future__ import annotations

import argparse
import json
import threading

import pytest

from common.config import DEFAULT_CONFIG, load_config
from common.messages import Frame, Track, Tracks
from common.service import ServiceContext
from services.sink import SinkLoop, make_sink
from services.sinks.retention import Retention
from stack_support import wait_for

FRAMES = 50


@pytest.fixture
def held_prune(monkeypatch):
    """Every prune waits, inside its walk, until the test releases it (a slow card, made certain)."""
    walking, release = threading.Event(), threading.Event()
    real_scan = Retention._scan

    def slow_scan(self):
        walking.set()
        release.wait(60)
        return real_scan(self)

    monkeypatch.setattr(Retention, "_scan", slow_scan)
    yield walking, release
    release.set()


def test_frames_keep_flowing_while_a_prune_is_held(tmp_path, held_prune):
    walking, release = held_prune
    out = tmp_path / "records" / "jsonl"
    cfg = load_config(DEFAULT_CONFIG, [f"stack.run_dir={tmp_path}", "sink.retention_check_s=0.05"])
    ctx = ServiceContext("sink-jsonl", cfg, argparse.Namespace(kind="jsonl", out=str(out), port=None))
    sink = make_sink("jsonl", ctx)
    sink.start()
    loop = SinkLoop(ctx, sink, None)
    handled = []

    def run():
        for i in range(FRAMES):
            frame = Frame(stack="t", frame_id=i, slot=0, seq=2, ring_id=1, t_capture=float(i), width=64, height=48,
                          source_pos=i)
            tracks = Tracks(frame_id=i, t_capture=float(i), t_tracked=float(i),
                            tracks=[Track(1, [1.0, 2.0, 30.0, 40.0], 0.9, "confirmed", i)])
            loop.batch([frame, tracks])
            loop.tick()
            handled.append(i)

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        wait_for(walking.is_set, 30, what="a prune under way")
        wait_for(lambda: len(handled) == FRAMES, 30, what=f"{FRAMES} frames handled while the prune is held")
        assert walking.is_set() and not release.is_set()  # all of it while the prune was still held
    finally:
        release.set()
        worker.join(30)
        loop.close()
        sink.close()
    lines = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    assert [r["frame_id"] for r in lines] == list(range(FRAMES))
