"""A 24/7 recorder on a real small disk: a full disk pauses it (one ERROR line, nothing written
before is damaged) and it resumes by itself; retention keeps `sink.record_dir` within its size
and age, oldest first, never touching the files being written. Real sink processes, a real
tmpfs mounted by the test (root), real files."""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import time

import pytest

from needs import tmpfs as mounted_tmpfs
from services.sinks.record_files import RecordFiles, complete_lines, read_records, segment_paths
from stack_support import error_lines, wait_for

SERVICE = "sink-recorder"


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MB tmpfs mounted for the test."""
    with mounted_tmpfs(tmp_path / "disk") as path:
        yield path


def fill(path) -> None:
    """Write `path` until the disk it is on has not one byte left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def mot_lines(directory) -> list[str]:
    return [line for p in segment_paths(directory, "tracks.txt") for line in complete_lines(p.read_text())]


def du(root) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_frame_is_written_whole_or_not_at_all_when_the_disk_fills(tmpfs):
    files = RecordFiles(tmpfs / "rec", ("tracks.txt", "tracks.jsonl"), 2**30, 3600, logging.getLogger("test"))
    files.open()

    def frame(n: int) -> dict[str, bytes]:
        return {"tracks.txt": f"{n},1,2,3\n".encode(), "tracks.jsonl": (json.dumps({"n": n, "pad": "x" * 300}) + "\n").encode()}

    assert all(files.write(frame(n)) for n in range(5))
    fill(tmpfs / "filler")  # what is left: the rest of each file's last page
    n = 5
    while files.write(frame(n)):
        n += 1
    assert n > 5
    files.close()
    jsonl = (tmpfs / "rec" / "tracks.jsonl").read_text()
    assert jsonl.endswith("\n") and [json.loads(line)["n"] for line in jsonl.splitlines()] == list(range(n))
    assert (tmpfs / "rec" / "tracks.txt").read_text() == "".join(f"{i},1,2,3\n" for i in range(n))
    assert files.stats() == {"recorded": n, "frames_not_recorded": 1, "disk_full": 1}


def test_a_full_disk_pauses_the_recorder_with_one_line_and_it_resumes_by_itself(stack, tmpfs):
    sink = stack.sink("--kind", "recorder", f"--set=sink.record_dir={tmpfs}")
    directory = tmpfs / sink.wait_log(r"recording to (\S+)").group(1).rsplit("/", 1)[1]
    stack.publish_until(lambda: len(read_records(directory)) >= 20)
    fill(tmpfs / "filler")
    stack.publish_until(lambda: getattr(stack.newest_metrics(SERVICE), "extra", {}).get("frames_not_recorded", 0) >= 30)
    before = read_records(directory)

    assert sink.proc.poll() is None  # up, and still reading the bus
    [line] = error_lines(sink.log())
    match = re.search(r"cannot write (\S+): No space left on device \((\d+\.\d) MB free of 1\.0 MB\)", line)
    assert match and match.group(1).startswith(f"{directory}/tracks.") and float(match.group(2)) < 0.01, line
    assert stack.newest_metrics(SERVICE).extra["disk_full"] == 1
    ids = [r["frame_id"] for r in before]  # what was written before: whole lines, in order, none lost
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert all(p.read_text().endswith("\n") for p in directory.iterdir())
    assert len(mot_lines(directory)) == len(before)  # one confirmed track a frame: the MOT file agrees

    (tmpfs / "filler").unlink()
    again = r"writing again; (\d+) frames were not recorded"
    stack.publish_until(lambda: re.search(again, sink.log()))
    missed = int(re.search(again, sink.log()).group(1))
    stack.publish_n(20)
    last = stack.next_id - 1
    m = stack.wait_metrics(SERVICE, lambda m: m.frames_out + m.dropped >= last + 1 - ids[0])
    assert m.extra["disk_full"] == 0 and m.extra["frames_not_recorded"] == missed >= 30
    after = [r["frame_id"] for r in read_records(directory)]
    assert after[:len(ids)] == ids and after[-1] == last
    assert len(set(range(ids[0], last + 1)) - set(after)) == missed + m.dropped  # the gap is what was counted
    assert len(mot_lines(directory)) == len(after)
    assert len(error_lines(sink.log())) == 1
    assert sink.stop() == 0


def test_retention_keeps_record_dir_within_its_size_oldest_first(stack, tmp_path):
    root = tmp_path / "records"
    for sub, name, age in (("demo-old", "tracks.jsonl", 1000), ("snapshots", "face-1.jpg", 500)):
        (root / sub).mkdir(parents=True)
        (root / sub / name).write_bytes(b"x" * 10_000)
        os.utime(root / sub / name, (time.time() - age,) * 2)
    limit = int(0.05 * 2**20)
    sink = stack.sink("--kind", "recorder", f"--set=sink.record_dir={root}", "--set=sink.max_record_mb=0.05",
                      "--set=sink.retention_check_s=0.2")
    directory = root / sink.wait_log(r"recording to (\S+)").group(1).rsplit("/", 1)[1]
    stack.publish_until(lambda: (directory / "tracks.jsonl").exists())
    sizes = []
    for _ in range(8):  # 8 x 60 frames of ~360 bytes: 3-4 times the limit
        stack.publish_n(60, fps=100)
        sizes.append(du(root))
    last = stack.next_id - 1
    wait_for(lambda: read_records(directory)[-1]["frame_id"] == last, timeout=15, what="the last frame recorded")
    written = sum(len(json.dumps(r)) + 1 for r in read_records(directory)) * (last + 1) / len(read_records(directory))
    m = stack.wait_metrics(SERVICE, lambda m: m.extra.get("record_bytes", 1e9) <= limit
                           and m.extra["retention_bytes_deleted"] > written - limit)

    assert not (root / "demo-old").exists() and not (root / "snapshots" / "face-1.jpg").exists()  # oldest first
    assert m.extra["retention_files_deleted"] >= 10 and m.extra["record_files"] >= 2
    assert max(sizes) <= limit + 100 * 360  # within the limit, plus what a frame rate writes between prunes
    numbers = sorted(int(p.stem.split("-")[1]) for p in directory.glob("tracks-*.jsonl"))
    assert numbers and numbers[0] > 1 and numbers == list(range(numbers[0], numbers[-1] + 1))  # a suffix
    ids = [r["frame_id"] for r in read_records(directory)]
    assert ids == list(range(ids[0], last + 1)) and ids[0] > 0  # the newest frames, none missing
    assert (directory / "tracks.jsonl").exists() and (directory / "tracks.txt").exists()
    assert sink.stop() == 0


def test_retention_deletes_by_age_but_never_the_files_being_written(stack, tmp_path):
    root = tmp_path / "records"
    max_age = 0.00002 * 86400  # 1.7 s; segments rotate every second
    sink = stack.sink("--kind", "recorder", f"--set=sink.record_dir={root}", "--set=sink.retention_days=0.00002",
                      "--set=sink.max_record_mb=0", "--set=sink.retention_check_s=0.2")
    directory = root / sink.wait_log(r"recording to (\S+)").group(1).rsplit("/", 1)[1]
    stack.publish_until(lambda: (directory / "tracks-000005.jsonl").exists(), timeout=30)
    segments = {p.name: p.stat().st_mtime for p in directory.glob("tracks-*")}
    assert all(mtime > time.time() - max_age - 1.0 for mtime in segments.values())  # none far over age
    assert "tracks-000001.jsonl" not in segments and "tracks-000001.txt" not in segments  # the first went by age

    m = wait_for(lambda: (lambda m: m if m and not list(directory.glob("tracks-*")) else None)(stack.newest_metrics(SERVICE)),
                 timeout=15, what="every closed segment deleted by age")
    assert m.extra["retention_files_deleted"] >= 8
    jsonl = directory / "tracks.jsonl"  # over age too by now, but still open for writing: it stays
    wait_for(lambda: time.time() - jsonl.stat().st_mtime > max_age + 1.0, timeout=10, what="the current file over age")
    stack.wait_metrics(SERVICE, lambda m: True)  # a prune or more since
    assert jsonl.exists() and complete_lines(jsonl.read_text()) and (directory / "tracks.txt").exists()
    assert sink.stop() == 0


def test_the_jsonl_sink_writes_segments_under_retention_with_out(stack, tmp_path):
    root = tmp_path / "records"
    out = root / "jsonl"
    sink = stack.sink("--kind", "jsonl", "--out", str(out), f"--set=sink.record_dir={root}",
                      "--set=sink.max_record_mb=0.02", "--set=sink.retention_check_s=0.2")
    stack.publish_until(lambda: (out / "tracks.jsonl").exists())
    stack.publish_n(200, fps=100)
    last = stack.next_id - 1
    wait_for(lambda: read_records(out)[-1]["frame_id"] == last, timeout=15, what="the last frame written")
    m = stack.wait_metrics("sink-jsonl", lambda m: m.extra.get("retention_files_deleted", 0) > 0
                           and m.extra["record_bytes"] <= 0.02 * 2**20)
    ids = [r["frame_id"] for r in read_records(out)]
    assert ids == list(range(ids[0], last + 1)) and ids[0] > 0  # the oldest segments went, the rest is whole
    assert m.extra["frames_not_recorded"] == 0 and m.extra["disk_full"] == 0
    assert sink.stop() == 0
