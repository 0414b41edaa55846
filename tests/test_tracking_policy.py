"""TrackManager's association and schedule on real faces pasted on a real photo (the scenes
of test_tracking_scenes): the Kalman prediction, ByteTrack's low-score stage, lifetimes in
seconds, a face leaving through the edge, lost boxes hidden on tracked faces, and the
cost schedule bridging missed faces with correlation trackers."""
from __future__ import annotations

import numpy as np
import pytest

from common.tracking import StepClock, FrameDetections, TrackManager, iou_matrix
from scene_support import FACE_H, FACE_W, config, detections, render, track_on


def _walk(background, faces, n, x0=60, y=120, speed=4, name="A"):
    return [(fid, render(background, faces, [(name, fid, x0 + speed * fid, y)])) for fid in range(n)]


def test_a_missed_face_is_followed_by_its_predicted_box_and_keeps_its_id(faces, background):
    """kind none, detector every frame, the detector misses 8 frames of a face walking
    4 px/frame: the coasting box moves with it (a frozen box would be 32 px behind)."""
    manager = TrackManager(config(kind="none", interval_min=1, interval_max=1), cores=4, clock=StepClock())
    frames = _walk(background, faces, 50)
    ids, coasting = set(), []
    for fid, (image, boxes, visible) in frames:
        missed = 30 <= fid < 38
        tracks = manager.step(fid, image, FrameDetections(fid, np.zeros((0, 4)), np.zeros(0)) if missed
                              else detections(fid, boxes, visible))
        if missed:
            (track,) = tracks
            coasting.append(iou_matrix(np.array(track.box), boxes["A"])[0, 0])
        elif fid > 2:
            ids.add(track_on(tracks, boxes["A"], 0.7).id)
    assert min(coasting) > 0.7, coasting
    assert len(ids) == 1


def test_low_score_detections_keep_tracks_but_start_none(faces, background):
    manager = TrackManager(config(kind="none", interval_min=1, interval_max=1, low_score=0.3), start_score=0.5,
                           cores=4, clock=StepClock())
    frames = [(fid, render(background, faces, [("A", fid, 80, 100), ("B", fid, 260, 100)])) for fid in range(20)]
    for fid, (image, boxes, _) in frames:
        a_score = 0.9 if fid < 5 else 0.35  # A half hidden after frame 5: the detector is unsure
        dets = FrameDetections(fid, np.array([boxes["A"], boxes["B"]]), np.array([a_score, 0.35]))
        tracks = manager.step(fid, image, dets)
    a = track_on(tracks, boxes["A"], 0.9)
    assert a is not None and a.id == 1
    assert track_on(tracks, boxes["B"], 0.3) is None, "a low-score detection started a track"
    assert manager.counters["low_score_matches"] >= 14


@pytest.mark.parametrize("fps", [10, 30])
def test_lifetime_is_in_seconds_whatever_the_frame_rate(faces, background, fps):
    manager = TrackManager(config(kind="none", interval_min=1, interval_max=1, max_lost_s=1.0), fps=fps,
                           cores=4, clock=StepClock())
    image, boxes, visible = render(background, faces, [("A", 0, 100, 100)])
    empty = FrameDetections(0, np.zeros((0, 4)), np.zeros(0))
    for fid in range(3):
        manager.step(fid, image, detections(fid, boxes, visible))
    alive = 0
    for fid in range(3, 3 + 3 * fps):
        if manager.step(fid, image, FrameDetections(fid, empty.boxes, empty.scores)):
            alive += 1
    assert alive == fps  # one second of frames


def test_a_face_leaving_through_the_edge_leaves_no_sliver(faces, background):
    """KCF between detections every 3 frames; the face walks out through the right edge.
    Once less than a third of it is inside, no confirmed box may remain at the edge, and no
    box (lost ones coast on their velocity) is published mostly outside the image."""
    manager = TrackManager(config(interval_min=3, interval_max=3), cores=4, clock=StepClock())
    width = background.shape[1]
    shown_after, x = [], 0
    for fid in range(70):
        x = 200 + 5 * fid
        image, boxes, visible = render(background, faces, [("A", fid, x, 120)] if x < width else [])
        tracks = manager.step(fid, image, detections(fid, boxes, visible) if fid % 3 == 0 else None)
        outside = [t for t in tracks if min(t.box[2], width) - max(t.box[0], 0) < (t.box[2] - t.box[0]) / 2]
        assert outside == [], f"frame {fid}: boxes published outside the image: {outside}"
        if width - x < FACE_W / 3:
            shown_after += [t for t in tracks if t.state == "confirmed"]
        elif fid > 5 and x + FACE_W < width:
            assert track_on(tracks, boxes["A"], 0.6) is not None, f"face lost at frame {fid} while inside"
    assert x > width + 50, "the face never left"
    assert shown_after == [], [(t.box, t.state) for t in shown_after]


def test_a_lost_box_is_not_shown_on_a_face_that_is_tracked(faces, background):
    """MOSSE fails on a blank frame and its track is lost where the face was; the face comes
    back far away (a new track) and walks back over the lost box: the detections follow the
    new track, and the stale lost box lying on that face is not published."""
    manager = TrackManager(config(kind="mosse", min_hits=1, rematch_dist=0.0, interval_min=1, interval_max=1,
                                  max_lost_s=2.0), cores=4, clock=StepClock())
    image, boxes, visible = render(background, faces, [("A", 0, 100, 100)])
    manager.step(0, image, detections(0, boxes, visible))
    manager.step(1, np.zeros_like(image), None)
    assert manager._tracks[0].state == "lost"
    overlapping = 0
    for fid in range(2, 30):
        image, boxes, visible = render(background, faces, [("A", fid, 216 - 4 * (fid - 2), 100)])
        tracks = manager.step(fid, image, detections(fid, boxes, visible))
        lost = manager._tracks[0]
        overlapping += lost.state == "lost" and iou_matrix(lost.box, boxes["A"])[0, 0] > 0.5
        assert [t.state for t in tracks if iou_matrix(np.array(t.box), boxes["A"])[0, 0] > 0.5] == ["confirmed"]
    assert overlapping >= 3, "the lost box never lay on the face"


def test_detector_on_its_own_core_detects_every_frame_and_correlation_bridges_an_occlusion(faces, background):
    """The detector has a core of its own (60 ms a call, slower than the camera): every frame
    it can is detected and trackers stop; a real object covering the face hides it from the
    detector for 20 frames, and a correlation tracker learnt on the face as last seen carries
    it through."""
    cover = background[200:300, 0:90].copy()
    manager = TrackManager(config(adaptive=True, interval_min=1, interval_max=10), cores=4, clock=StepClock())
    last, kept = -100, []
    for fid in range(60):
        image, boxes, visible = render(background, faces, [("A", fid, 120, 110)])
        hidden = 30 <= fid < 50
        if hidden:  # the lower 40 % of the face covered: the detector misses it
            image[110 + int(0.6 * FACE_H):110 + FACE_H, 110:110 + cover.shape[1]] = cover[:int(0.4 * FACE_H)]
        det = None
        if fid - last >= manager.detect_interval:
            det = detections(fid, {} if hidden else boxes, {} if hidden else visible)
            last = fid
            manager.detector_cost(60.0)
        tracks = manager.step(fid, image, det)
        if fid > 5:
            assert manager.detect_interval == 1 and manager.bridging
        if hidden:
            kept.append(track_on(tracks, boxes["A"], 0.5))
    assert all(t is not None and t.id == 1 for t in kept), kept
    assert manager.counters["bridges"] == 1


@pytest.mark.parametrize("detector_ms, bridging", [(4.0, False), (2.0, True)])
def test_on_one_core_the_cheaper_of_detecting_and_tracking_wins(faces, background, detector_ms, bridging):
    """Sharing one core, a detection dearer than tracking the face leaves the face to its
    tracker between sparse detections; a cheaper one is run every frame. The costs are the
    injected ones (a tracker update costs 3 ms by the StepClock), not this machine's: the
    choice is the same on any machine."""
    manager = TrackManager(config(adaptive=True, interval_min=1, interval_max=10), cores=1, clock=StepClock(3.0))
    last = -100
    for fid in range(60):
        image, boxes, visible = render(background, faces, [("A", fid, 120, 110)])
        det = None
        if fid - last >= manager.detect_interval:
            det, last = detections(fid, boxes, visible), fid
            manager.detector_cost(detector_ms)
        manager.step(fid, image, det)
    assert manager.bridging is bridging
    assert manager.detect_interval == (1 if bridging else 10)
    assert (manager._tracks[0].tracker is not None) is not bridging
