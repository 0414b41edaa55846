"""The scoring half of `facetrack eval`: TrackEval on the real OTB and composed ground truth.

Tracks made from the gt itself (on head-boxed OTB mapped back from heads to faces by the
inverse of the documented rule; on face-boxed SYN taken as they are) must score perfectly;
the same tracks with the ID changed half-way must show exactly one ID switch. This checks
the file layout, the face→head mapping (applied to head-boxed data only), the metric
plumbing and the live detector timing of the replay; the detector is not involved.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from facetrack.eval import HEAD_FROM_FACE, RunResult, Sequence, face_to_head, score, summarise, write_mot
from facetrack.eval_replay import DetectorClock
from models.dataset import DATA_DIR

SEQ = DATA_DIR / "OTB-Girl-A"
SYN = DATA_DIR / "SYN-Dev-1"
pytestmark = pytest.mark.usefixtures("data_dir")


def _face_rows(seq: Sequence, switch_at: int | None = None):
    dx, dy, sx, sy = seq.head_rule
    rows = []
    for frame, _, left, top, gw, gh, *_ in seq.gt:
        w, h = gw / sx, gh / sy
        cx, cy = left - 1 + gw / 2 - dx * w, top - 1 + gh / 2 - dy * h
        tid = 2 if switch_at is not None and frame >= switch_at else 1
        rows.append((int(frame), tid, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 1.0))
    return rows


@pytest.mark.parametrize("variant", sorted(HEAD_FROM_FACE))
def test_face_to_head_inverts(variant):
    face = np.array([10.0, 20.0, 50.0, 70.0])
    head = face_to_head(face, HEAD_FROM_FACE[variant])
    dx, dy, sx, sy = HEAD_FROM_FACE[variant]
    assert head[2] - head[0] == pytest.approx(40 * sx) and head[3] - head[1] == pytest.approx(50 * sy)
    assert (head[0] + head[2]) / 2 == pytest.approx(30 + dx * 40)


def test_scoring_perfect_and_switched_tracks():
    seq = Sequence.load(SEQ, boxes="head")
    n = len(seq.frames)
    results = {"perfect": {seq.name: RunResult(_face_rows(seq), n, 0, 0.0, 0.0, {})},
               "switch": {seq.name: RunResult(_face_rows(seq, switch_at=150), n, 0, 0.0, 0.0, {})},
               "empty": {seq.name: RunResult([], n, 0, 0.0, 0.0, {})}}
    scores = score(results, [seq])
    perfect, switch, empty = (scores[k]["COMBINED"] for k in ("perfect", "switch", "empty"))
    assert perfect["HOTA"] > 99 and perfect["MOTA"] > 99 and perfect["IDF1"] > 99 and perfect["IDSW"] == 0
    assert switch["IDSW"] == 1 and switch["MOTA"] > 99 and 40 < switch["IDF1"] < 60
    assert empty["HOTA"] == 0 and empty["IDSW"] == 0
    assert scores["switch"][seq.name]["IDSW"] == 1


def _gt_rows(seq: Sequence):
    """The gt's own boxes as tracks (0-based xyxy, as the tracker publishes them)."""
    return [(int(f), int(i), x - 1, y - 1, x - 1 + w, y - 1 + h, 1.0) for f, i, x, y, w, h, *_ in seq.gt]


def test_face_boxed_sequences_are_scored_as_published_and_saved_1_based(tmp_path):
    syn, otb = Sequence.load(SYN), Sequence.load(SEQ, boxes="head")
    assert syn.boxes == "face" and syn.fps == 30 and syn.group == "SYN"
    rows = _gt_rows(syn)
    results = {"gt": {syn.name: RunResult(rows, len(syn.frames), 0, 0.0, 0.0, {}),
                      otb.name: RunResult(_face_rows(otb), len(otb.frames), 0, 0.0, 0.0, {})}}
    summary = summarise(results, [syn, otb])
    assert set(summary) == {"SYN", "OTB", "ALL", syn.name, otb.name}
    for scope in summary.values():
        assert scope[0]["HOTA"] > 99 and scope[0]["IDSW"] == 0
    assert summary[otb.name][0]["Frag"] == 0  # (TrackEval counts SYN's full-occlusion gaps in the gt itself)
    # the head rule applied to face-boxed data would ruin it
    head = dataclasses.replace(syn, boxes="head")
    assert score({"gt": {syn.name: results["gt"][syn.name]}}, [head])["gt"]["COMBINED"]["HOTA"] < 60
    write_mot(tmp_path / "syn.txt", rows[:1], head_rule=None)
    frame, tid, left, top, w, h = tmp_path.joinpath("syn.txt").read_text().split(",")[:6]
    np.testing.assert_allclose([float(left), float(top), float(w), float(h)], syn.gt[0, 2:6], atol=0.01)


def test_detector_clock_delivers_late_and_starts_only_when_free():
    clock = DetectorClock(latency_ms=50, fps=30)  # 1.5 frames
    assert clock.can_start(1)
    clock.start(1)
    assert clock.arrived(1) == [] and clock.arrived(2) == [] and not clock.can_start(2)
    assert clock.can_start(3) and clock.arrived(3) == [1]
    now = DetectorClock(latency_ms=0, fps=30)
    now.start(5)
    assert now.arrived(5) == [5] and now.can_start(5)


def _short_copy(src: Path, dst: Path, frames: int, boxes: str | None = None) -> Path:
    """The first `frames` frames of a sequence as a sequence of its own (images linked)."""
    (dst / "img1").mkdir(parents=True)
    (dst / "gt").mkdir()
    for i in range(1, frames + 1):
        (dst / "img1" / f"{i:06d}.jpg").symlink_to(src / "img1" / f"{i:06d}.jpg")
    gt = [line for line in (src / "gt/gt.txt").read_text().splitlines() if int(line.split(",")[0]) <= frames]
    (dst / "gt/gt.txt").write_text("\n".join(gt) + "\n")
    extra = f"boxes={boxes}\n" if boxes else ""
    (dst / "seqinfo.ini").write_text(f"[Sequence]\nname={dst.name}\nimDir=img1\nframeRate=30\nseqLength={frames}\n"
                                     f"imWidth=352\nimHeight=288\nimExt=.jpg\n{extra}")
    return dst


def test_eval_runs_every_baseline_on_the_real_detector_and_saves_their_tracks(tmp_path, capsys):
    """`facetrack eval` end to end on 40 real frames: the default and the three baselines in
    one table, each setting's tracks saved as 1-based MOT face boxes that overlap the face."""
    from facetrack.eval import main

    seq = _short_copy(SEQ.parent / "OTB-FaceOcc1-A", tmp_path / "OTB-Short", 40, boxes="head")
    assert main([str(seq), "--latency-ms", "40", "--save", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["latency_ms"] == 40
    settings = {row["setting"]: row for row in report["scopes"]["OTB-Short"]}
    assert set(settings) == {"facetrack", "article-kcf-5", "none-1", "bytetrack"}
    assert settings["none-1"]["detector_calls"] == 20  # 40 ms: busy for 2 frames of 33 ms each call
    assert settings["article-kcf-5"]["detector_calls"] == 8
    assert all(row["HOTA"] > 40 for row in settings.values()), settings  # head-mapped: a face scores ~0.5 IoU raw
    gt = Sequence.load(seq).gt
    for name in settings:
        rows = np.loadtxt(tmp_path / "out" / name / "OTB-Short.txt", delimiter=",", ndmin=2)
        assert len(rows) >= 30 and rows[:, 0].min() >= 1 and rows[:, 0].max() <= 40
        last = rows[rows[:, 0] == rows[:, 0].max()][0]
        gx, gy, gw, gh = gt[int(last[0]) - 1, 2:6]
        cx, cy = last[2] + last[4] / 2, last[3] + last[5] / 2  # the saved face's centre lies in the head box
        assert gx <= cx <= gx + gw and gy <= cy <= gy + gh, (name, last, gt[int(last[0]) - 1])
