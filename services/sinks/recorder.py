"""Recorder sink: every frame's tracks on disk, in MOTChallenge text and as JSON lines.

  tracks.txt    `frame,id,left,top,width,height,conf,-1,-1,-1` per confirmed track, with
                frame = Frame.source_pos + 1 (1-based), so it compares with a sequence's
                gt.txt as it is (for one pass of the source: a looping source repeats numbers)
  tracks.jsonl  one object per frame: frame_id, source_pos, t_capture, t_tracked, t_sink,
                tracks (every state, lost ones included)

Both files are line buffered: every frame reaches the OS before the next one is handled,
so killing the process (even with SIGKILL) loses nothing already recorded. An existing
directory (`--out`) is appended to, so a restarted recorder keeps what it wrote before.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from services.sinks.base import Sink
from services.sinks.pairing import Paired

log = logging.getLogger("sink.recorder")


def session_dir(record_dir: str | Path, stack_id: str) -> Path:
    """A new `<record_dir>/<stack_id>-<start time>` directory (suffixed if taken)."""
    base = Path(record_dir) / f"{stack_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def mot_lines(paired: Paired) -> str:
    frame = paired.frame.source_pos + 1
    out = []
    for t in paired.tracks.tracks:
        if t.state != "confirmed":
            continue
        x1, y1, x2, y2 = t.box
        out.append(f"{frame},{t.id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{t.score:.4f},-1,-1,-1\n")
    return "".join(out)


class Recorder(Sink, kind="recorder"):
    needs_pixels = False
    wants_snapshots = True  # saved beside the recordings (snapshots.py)
    options = ("out",)

    def __init__(self, directory: Path):
        self.directory = directory
        self.frames = 0
        self._mot = None
        self._jsonl = None

    @classmethod
    def from_context(cls, ctx) -> Recorder:
        out = ctx.args.out
        return cls(Path(out) if out else session_dir(ctx.config.sink.record_dir, ctx.config.stack.id))

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mot = open(self.directory / "tracks.txt", "a", buffering=1, encoding="ascii")
        self._jsonl = open(self.directory / "tracks.jsonl", "a", buffering=1, encoding="utf-8")
        log.info("recording to %s", self.directory)

    def handle(self, paired: Paired) -> None:
        lines = mot_lines(paired)
        if lines:
            self._mot.write(lines)  # one write per frame; line buffering hands it to the OS
        self._jsonl.write(json.dumps(paired.record(time.time())) + "\n")
        self.frames += 1

    def stats(self) -> dict[str, float]:
        return {"recorded": self.frames}

    def close(self) -> None:
        for f in (self._mot, self._jsonl):
            if f is not None:
                f.close()
        log.info("recorded %d frames in %s", self.frames, self.directory)
