"""The scoring half of `facetrack eval`: TrackEval on the real OTB ground truth.

Tracks made from the gt itself (mapped back from heads to faces by the inverse of the
documented rule) must score perfectly; the same tracks with the ID changed half-way must
show exactly one ID switch. This checks the file layout, the face→head mapping and the
metric plumbing; the detector is not involved.
"""
from __future__ import annotations


import numpy as np
import pytest

from models.dataset import DATA_DIR
from facetrack.eval import HEAD_FROM_FACE, RunResult, Sequence, face_to_head, score

SEQ = DATA_DIR / "OTB-Girl-A"
pytestmark = pytest.mark.usefixtures("data_dir")


def _face_rows(seq: Sequence, switch_at: int | None = None):
    dx, dy, sx, sy = HEAD_FROM_FACE
    rows = []
    for frame, _, left, top, gw, gh, *_ in seq.gt:
        w, h = gw / sx, gh / sy
        cx, cy = left - 1 + gw / 2 - dx * w, top - 1 + gh / 2 - dy * h
        tid = 2 if switch_at is not None and frame >= switch_at else 1
        rows.append((int(frame), tid, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 1.0))
    return rows


def test_face_to_head_inverts():
    face = np.array([10.0, 20.0, 50.0, 70.0])
    head = face_to_head(face)
    dx, dy, sx, sy = HEAD_FROM_FACE
    assert head[2] - head[0] == pytest.approx(40 * sx) and head[3] - head[1] == pytest.approx(50 * sy)
    assert (head[0] + head[2]) / 2 == pytest.approx(30 + dx * 40)


def test_scoring_perfect_and_switched_tracks():
    seq = Sequence.load(SEQ)
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
