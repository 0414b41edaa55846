"""JSON lines sink: one line per frame with its tracks on stdout, for pipes and scripts.

    facetrack sink jsonl | jq -c '.tracks[] | select(.state == "confirmed")'

Each line is the recorder's record (frame_id, source_pos, t_capture, t_tracked, t_sink,
tracks[id, box, score, state, age]). Every frame is written (not only the newest), and each
line is flushed at once. Logging goes to stderr, so stdout carries nothing but JSON. When
the reader goes away (a closed pipe), the sink stops cleanly.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time

from services.sinks.base import Sink
from services.sinks.pairing import Paired

log = logging.getLogger("sink.jsonl")


class JsonLines(Sink, kind="jsonl"):
    needs_pixels = False

    def __init__(self, stop: threading.Event, stream=None):
        self.stop = stop
        self.stream = stream or sys.stdout
        self.lines = 0

    @classmethod
    def from_context(cls, ctx) -> JsonLines:
        return cls(ctx.stop)

    def start(self) -> None:
        log.info("writing JSON lines of tracks to stdout")

    def handle(self, paired: Paired) -> None:
        try:
            self.stream.write(json.dumps(paired.record(time.time())) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            log.info("stdout closed after %d lines: stopping", self.lines)
            self.stop.set()
            return
        self.lines += 1

    def stats(self) -> dict[str, float]:
        return {"lines": self.lines}

    def close(self) -> None:
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
