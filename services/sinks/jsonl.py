"""JSON lines sink: one line per frame with its tracks, on stdout (for pipes and scripts) or,
with `--out DIR`, into segmented files there.

    facetrack sink jsonl | jq -c '.tracks[] | select(.state == "confirmed")'
    facetrack sink jsonl --out run/records/jsonl      # DIR/tracks.jsonl, tracks-000001.jsonl, ...

Each line is the recorder's record (frame_id, source_pos, t_capture, t_tracked, t_sink,
tracks[id, box, score, state, age]). Every frame is written (not only the newest), and each
line is flushed at once. Logging goes to stderr, so stdout carries nothing but JSON. When
the reader goes away (a closed pipe), the sink stops cleanly. Into files, it writes as the
recorder does (services/sinks/record_files.py: segments, whole lines, fsync once a second, a
full disk waited out) and the sink loop prunes `sink.record_dir` (or DIR, if outside it).
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path

from services.sinks.base import Sink
from services.sinks.pairing import Paired
from services.sinks.record_files import RecordFiles
from services.sinks.retention import root_for

log = logging.getLogger("sink.jsonl")
FILE = "tracks.jsonl"


class JsonLines(Sink, kind="jsonl"):
    needs_pixels = False
    options = ("out",)

    def __init__(self, stop: threading.Event, stream=None, files: RecordFiles | None = None,
                 root: Path | None = None):
        self.stop = stop
        self.stream = stream or sys.stdout
        self.files, self.root = files, root
        self.lines = 0

    @classmethod
    def from_context(cls, ctx) -> JsonLines:
        if ctx.args.out is None:
            return cls(ctx.stop)
        sink, directory = ctx.config.sink, Path(ctx.args.out)
        return cls(ctx.stop, files=RecordFiles.from_config(directory, (FILE,), sink, log),
                   root=root_for(directory, Path(sink.record_dir)))

    def start(self) -> None:
        if self.files is None:
            log.info("writing JSON lines of tracks to stdout")
        else:
            self.files.open()
            log.info("writing JSON lines of tracks to %s", self.files.directory / FILE)

    def handle(self, paired: Paired) -> None:
        line = json.dumps(paired.record(time.time())) + "\n"
        if self.files is not None:
            self.lines += self.files.write({FILE: line.encode("utf-8")})
            return
        try:
            self.stream.write(line)
            self.stream.flush()
        except BrokenPipeError:
            log.info("stdout closed after %d lines: stopping", self.lines)
            self.stop.set()
            return
        self.lines += 1

    def tick(self) -> None:
        if self.files is not None:
            self.files.tick()

    def record_root(self) -> Path | None:
        return self.root

    def stats(self) -> dict[str, float]:
        return {"lines": self.lines, **(self.files.stats() if self.files is not None else {})}

    def close(self) -> None:
        if self.files is not None:
            self.files.close()
            return
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
