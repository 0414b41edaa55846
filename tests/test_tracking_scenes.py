"""TrackManager on real faces with exact ground truth.

Scenes paste real face crops (OTB FaceOcc1 and Girl frames, cut at their gt boxes, one crop
per frame so the face changes like in video) onto a real background (a WIDER photo without
annotated faces). The pasted rectangles are the exact ground truth, and the "detections"
are those rectangles: these tests check the tracker logic, not the detector.
"""
from __future__ import annotations


import numpy as np
import pytest

from common.tracking import StepClock, TrackManager, iou_matrix
from scene_support import FACE_H, FACE_W, config, detections, render, run, track_on

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.mark.parametrize("gap, same_id", [(10, True), (45, False)])
def test_face_returning_within_max_lost_keeps_id_after_it_gets_new_id(faces, background, gap, same_id):
    manager = TrackManager(config(max_lost_s=20 / 30), cores=4, clock=StepClock())
    pos = (150, 120)

    def scene():
        for fid in range(30 + gap + 30):
            away = 30 <= fid < 30 + gap
            yield fid, render(background, faces, [] if away else [("A", fid, *pos)])

    out = run(manager, scene())
    box = np.array([pos[0], pos[1], pos[0] + FACE_W, pos[1] + FACE_H], float)
    before, after = track_on(out[29], box), track_on(out[30 + gap + 29], box)
    assert before is not None and after is not None
    assert (before.id == after.id) is same_id
    if not same_id:
        assert not out[30 + 20 + 2], "a track outlived max_lost frames without detections"
        assert manager.counters["tracks_ended"] >= 1


def test_crossing_faces_keep_their_ids(faces, background):
    manager = TrackManager(config(interval_min=2, interval_max=2), cores=4, clock=StepClock())
    n = 65

    def scene():
        for fid in range(n):
            xa, xb = 30 + 4 * fid, 320 - 4 * fid
            yield fid, render(background, faces, [("A", fid, xa, 110), ("B", fid, xb, 140)])

    frames = list(scene())
    out = run(manager, frames, every=2)
    ids = {}
    for fid in (6, n - 1):
        _, boxes, _ = frames[fid][1]
        for name in ("A", "B"):
            track = track_on(out[fid], boxes[name])
            assert track is not None, f"{name} not tracked at frame {fid}"
            ids.setdefault(name, set()).add(track.id)
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"], ids
    # the faces really met: A was hidden below half visibility for some frames
    assert min(f[1][2]["A"] for f in frames) < 0.5


def test_tracker_pushed_off_the_face_is_reinitialised_at_next_detection(faces, background):
    manager = TrackManager(config(), cores=4, clock=StepClock())

    def frame(fid):
        return render(background, faces, [("A", fid, 100 + 2 * fid, 120)])

    for fid in range(12):
        image, boxes, visible = frame(fid)
        tracks = manager.step(fid, image, detections(fid, boxes, visible) if fid % 3 == 0 else None)
    track = track_on(tracks, boxes["A"], 0.7)
    assert track is not None
    # push the correlation tracker 40% of a face width to the right (IoU with the face ~0.43)
    wrong = boxes["A"] + np.array([0.4 * FACE_W, 0, 0.4 * FACE_W, 0])
    internal = manager._tracks[0]
    assert internal.tracker.init(image, wrong)
    internal.box = wrong
    reinits = manager.counters["reinits"]
    image, boxes, visible = frame(12)
    tracks = manager.step(12, image, detections(12, boxes, visible))
    assert manager.counters["reinits"] == reinits + 1
    after = track_on(tracks, boxes["A"], 0.8)
    assert after is not None and after.id == track.id
    for fid in range(13, 20):  # and the re-initialised tracker follows the face
        image, boxes, _ = frame(fid)
        tracks = manager.step(fid, image, None)
    assert track_on(tracks, boxes["A"], 0.7) is not None


def test_late_detections_land_on_the_face_now_not_where_it_was(faces, background):
    """Detections of frame k arrive at k+9 while the face moves 4 px/frame: the stale box is
    36 px behind (IoU 0.28 with the face now, under match_iou). drift_iou=0.99 makes every
    matched detection re-initialise the tracker, so each one must be carried forward."""
    speed, delay, every = 4, 9, 4
    manager = TrackManager(config(drift_iou=0.99, interval_min=every, interval_max=every), cores=4, clock=StepClock())

    def x_at(fid):  # sits still while it is found and confirmed, then walks right
        return 40 + speed * max(0, fid - 24)

    frames = [(fid, render(background, faces, [("A", fid, x_at(fid), 120)])) for fid in range(70)]
    face = {fid: f[1]["A"] for fid, f in frames}
    stale = face[60 - delay]
    assert iou_matrix(stale, face[60])[0, 0] < 0.3
    out = run(manager, frames, every=every, delay=delay)
    assert manager.counters["late_frames"] == delay * manager.counters["detections_applied"]
    assert manager.counters["reinits"] >= 8, manager.counters  # the carried-forward path really ran
    ids = set()
    for fid in range(30, 70):  # every 4th of these frames re-initialised from a 9-frame-old detection
        track = track_on(out[fid], face[fid], 0.6)
        assert track is not None, f"track off the face at frame {fid}"
        ids.add(track.id)
    assert len(ids) == 1


def test_adaptive_interval_shrinks_on_trouble_and_grows_when_calm(faces, background):
    manager = TrackManager(config(adaptive=True, interval_min=1, interval_max=8), cores=4, clock=StepClock())
    last_det, intervals = -100, []

    def placements(fid):
        if fid < 120:
            return [("A", fid, 100, 100)]
        if fid < 125:
            return [("A", fid, 100, 100), ("B", fid, 260, 90)]  # a new face
        return [("A", fid, 100 + 60 * (fid % 2), 100), ("B", fid, 260, 90)]  # A jumping: drift

    for fid in range(240):
        image, boxes, visible = render(background, faces, placements(fid))
        calm = fid >= 160
        if calm:
            image, boxes, visible = render(background, faces, [("A", fid, 100, 100), ("B", fid, 260, 90)])
        det = None
        if fid - last_det >= manager.detect_interval:
            det, last_det = detections(fid, boxes, visible), fid
        manager.step(fid, image, det)
        intervals.append(manager.detect_interval)
    assert max(intervals[:120]) == 8, "calm scene should reach interval_max"
    assert min(intervals[120:160]) <= 2, "new face and jumping face should shrink the interval"
    assert intervals[-1] == 8, "calm again: back to interval_max"
