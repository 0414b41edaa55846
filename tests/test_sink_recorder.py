"""The recorder as a real process: MOT text and JSON lines equal what was published, and
nothing already recorded is lost when it is killed with SIGKILL."""
from __future__ import annotations

import json
import signal
import time

from services.sinks.recorder import mot_lines
from services.sinks.pairing import Paired
from sink_support import SEQ


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_frame(path, frame_id: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and f'"frame_id": {frame_id},' in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"frame {frame_id} never recorded in {path}")


def test_recorder_writes_what_was_published(stack):
    out = stack.tmp / "rec"
    sink = stack.sink("--kind", "recorder", "--out", str(out))
    jsonl = out / "tracks.jsonl"
    stack.publish_until(lambda: jsonl.exists() and jsonl.stat().st_size > 0)
    stack.publish_n(40, fps=100)
    wait_for_frame(jsonl, stack.next_id - 1)
    assert sink.stop() == 0

    records = read_jsonl(jsonl)
    first = records[0]["frame_id"]
    assert [r["frame_id"] for r in records] == list(range(first, stack.next_id))  # none lost
    for r in records:
        frame, tracks = stack.sent[r["frame_id"]]
        assert r["source_pos"] == frame.source_pos
        assert r["t_capture"] == tracks.t_capture and r["t_tracked"] == tracks.t_tracked
        assert r["t_sink"] >= r["t_tracked"]
        assert r["tracks"] == [{"id": t.id, "box": t.box, "score": t.score, "state": t.state, "age": t.age}
                               for t in tracks.tracks]
    expected = "".join(mot_lines(Paired(*stack.sent[r["frame_id"]])) for r in records)
    assert (out / "tracks.txt").read_text() == expected
    # MOT frame numbers are source positions + 1: the confirmed track's lines are gt.txt's boxes
    gt = {int(line.split(",")[0]): [float(v) for v in line.split(",")[2:6]]
          for line in (SEQ / "gt" / "gt.txt").read_text().splitlines()}
    for line in (out / "tracks.txt").read_text().splitlines():
        fields = line.split(",")
        assert fields[1] == "1" and fields[7:] == ["-1", "-1", "-1"]  # lost track 7 not in MOT text
        assert [float(v) for v in fields[2:6]] == gt[int(fields[0])]


def test_recorder_loses_nothing_on_sigkill(stack):
    out = stack.tmp / "rec"
    sink = stack.sink("--kind", "recorder", "--out", str(out))
    jsonl = out / "tracks.jsonl"
    stack.publish_until(lambda: jsonl.exists() and jsonl.stat().st_size > 0)
    stack.publish_n(30, fps=100)
    last = stack.next_id - 1
    wait_for_frame(jsonl, last)
    sink.proc.send_signal(signal.SIGKILL)
    assert sink.proc.wait(timeout=5) == -signal.SIGKILL

    text = jsonl.read_text()
    assert text.endswith("\n")
    records = read_jsonl(jsonl)
    assert records[-1]["frame_id"] == last
    assert [r["frame_id"] for r in records] == list(range(records[0]["frame_id"], last + 1))
    mot = (out / "tracks.txt").read_text()
    assert mot.endswith("\n") and len(mot.splitlines()) == len(records)  # one confirmed track a frame


def test_recorder_default_directory_is_per_stack_and_start_time(stack):
    sink = stack.sink("--kind", "recorder")
    match = sink.wait_log(r"recording to (\S+)")
    directory = match.group(1)
    assert directory.startswith(f"{stack.tmp}/records/{stack.stack_id}-")
    assert sink.stop() == 0
