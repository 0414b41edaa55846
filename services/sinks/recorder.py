"""Recorder sink: every frame's tracks on disk, in MOTChallenge text and as JSON lines.

  tracks.txt    `frame,id,left,top,width,height,conf,-1,-1,-1` per confirmed track, with
                frame = Frame.source_pos + 1 (1-based), so it compares with a sequence's
                gt.txt as it is (for one pass of the source: a looping source repeats numbers)
  tracks.jsonl  one object per frame: frame_id, source_pos, t_capture, t_tracked, t_sink,
                tracks (every state, lost ones included)

Both are segmented (services/sinks/record_files.py): the current files keep these names,
closed ones are numbered (`tracks-000001.txt`, `tracks-000001.jsonl`, the same frames), so a
session's whole MOT file is `cat tracks-*.txt tracks.txt`, with the frame numbers as they are;
the sink loop deletes the oldest segments to keep `sink.record_dir` within its limits
(services/sinks/retention.py). Every frame reaches the OS before the next one is handled, so
killing the process (even with SIGKILL) loses nothing already recorded; files are fsync'd
once a second, so a power cut loses at most about the last second. A frame is written to both
files or to neither; a full disk pauses recording (one ERROR line) until there is room again.
An existing directory (`--out`) is appended to, so a restarted recorder keeps what it wrote.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from services.sinks.base import Sink
from services.sinks.pairing import Paired
from services.sinks.record_files import RecordFiles
from services.sinks.retention import root_for

log = logging.getLogger("sink.recorder")
FILES = ("tracks.txt", "tracks.jsonl")


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

    def __init__(self, files: RecordFiles, root: Path):
        self.files, self.root = files, root

    @classmethod
    def from_context(cls, ctx) -> Recorder:
        sink = ctx.config.sink
        out = ctx.args.out
        directory = Path(out) if out else session_dir(sink.record_dir, ctx.config.stack.id)
        return cls(RecordFiles.from_config(directory, FILES, sink, log), root_for(directory, Path(sink.record_dir)))

    def start(self) -> None:
        self.files.open()
        log.info("recording to %s", self.files.directory)

    def handle(self, paired: Paired) -> None:
        record = json.dumps(paired.record(time.time())) + "\n"
        self.files.write({"tracks.txt": mot_lines(paired).encode("ascii"), "tracks.jsonl": record.encode("utf-8")})

    def tick(self) -> None:
        self.files.tick()

    def record_root(self) -> Path:
        return self.root

    def stats(self) -> dict[str, float]:
        return self.files.stats()

    def close(self) -> None:
        self.files.close()
        log.info("recorded %d frames in %s (%d not recorded)", self.files.frames, self.files.directory,
                 self.files.not_recorded)
