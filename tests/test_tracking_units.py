"""Unit tests of the tracking library: association, carry-forward, interval, tracker
factory and TrackManager bookkeeping (probation, late/stale/future detections, failure)."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import TrackerConfig, replace
from common.tracking import (KINDS, FrameDetections, StepClock, TrackManager, associate, box_iou, carry_forward,
                             create_tracker, iou_matrix)
from common.tracking.interval import DetectInterval
from models.dataset import DATA_DIR

FRAME = DATA_DIR / "OTB-FaceOcc1-A" / "img1" / "000001.jpg"
FACE = np.array([130.0, 84.0, 242.0, 244.0])  # gt of that frame, 0-based xyxy


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1, 1 / 3, 0], [1, 1 / 3, 0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)
    for box in b:
        assert box_iou(a[0], box) == pytest.approx(iou_matrix(a[0], box)[0, 0])


def test_associate_maximises_total_iou_and_gates():
    # greedy would take t0-d0 (0.9) and leave t1 unmatched; the optimum pairs t0-d1, t1-d0
    t = np.array([[0, 0, 10, 10], [-3, 0, 7, 10]], float)
    d = np.array([[-0.5, 0, 9.5, 10], [1, 0, 11, 10]], float)
    matches, lone_t, lone_d = associate(t, d, 0.3)
    assert sorted(matches) == [(0, 1), (1, 0)] and lone_t == [] and lone_d == []
    matches, lone_t, lone_d = associate(t[:1], np.array([[8, 0, 18, 10]], float), 0.3)
    assert matches == [] and lone_t == [0] and lone_d == [0]


boxes = st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50)),
                 min_size=0, max_size=5).map(
    lambda bs: np.array([(x, y, x + w, y + h) for x, y, w, h in bs], float).reshape(-1, 4))


@settings(max_examples=200, deadline=None)
@given(boxes, boxes, st.floats(0.05, 0.9))
def test_associate_is_one_to_one_gated_and_optimal(t, d, min_iou):
    matches, lone_t, lone_d = associate(t, d, min_iou)
    iou = iou_matrix(t, d)
    assert len({i for i, _ in matches}) == len(matches) == len({j for _, j in matches})
    assert sorted([i for i, _ in matches] + lone_t) == list(range(len(t)))
    assert sorted([j for _, j in matches] + lone_d) == list(range(len(d)))
    assert all(iou[i, j] >= min_iou for i, j in matches)
    best = 0.0  # brute force over all one-to-one pairings of valid pairs
    for perm in itertools.permutations(range(max(len(t), len(d))), len(t)):
        best = max(best, sum(iou[i, j] for i, j in enumerate(perm) if j < len(d) and iou[i, j] >= min_iou))
    assert sum(iou[i, j] for i, j in matches) == pytest.approx(best)


def test_carry_forward_moves_and_scales_like_the_track():
    then, det = np.array([10, 10, 30, 50.0]), np.array([12, 14, 32, 54.0])
    now = np.array([40, 20, 80, 100.0])  # moved +40,+30 (centre) and doubled in size: error +2,+4
    np.testing.assert_allclose(carry_forward(now, then, det), [42, 24, 82, 104])
    np.testing.assert_allclose(carry_forward(then, then, det), det)


def test_interval_is_aimd_within_bounds_and_fixed_when_not_adaptive():
    iv = DetectInterval(2, 6, adaptive=True)
    assert [iv.update(False) for _ in range(6)] == [3, 4, 5, 6, 6, 6]
    assert [iv.update(True) for _ in range(3)] == [3, 2, 2]
    fixed = DetectInterval(3, 9, adaptive=False)
    assert {fixed.update(u) for u in (True, False, False)} == {3}
    with pytest.raises(ValueError):
        DetectInterval(4, 3, adaptive=True)


@pytest.mark.parametrize("kind", KINDS)
def test_tracker_factory_follows_a_shifted_real_face(kind):
    image = cv2.imread(str(FRAME))
    tracker = create_tracker(kind)
    if kind == "none":
        assert tracker is None
        return
    assert tracker.init(image, FACE)
    shifted = np.roll(image, 6, axis=1)
    box = tracker.update(shifted)
    assert box is not None and iou_matrix(box, FACE + [6, 0, 6, 0])[0, 0] > 0.8
    assert not tracker.init(image, np.array([-50, -50, -10, -10.0]))  # outside the image
    with pytest.raises(ValueError):
        create_tracker("kfc")


def _cfg(**changes):
    return replace(TrackerConfig(kind="kcf", min_hits=2, max_lost_s=10 / 30, adaptive=False,
                                             interval_min=1, interval_max=1), **changes)


def _det(frame_id, *boxes):
    return FrameDetections(frame_id, np.array(boxes, float).reshape(-1, 4), np.full(len(boxes), 0.9))


@pytest.fixture(scope="module")
def image():
    return cv2.imread(str(FRAME))


@pytest.mark.parametrize("kind", KINDS)
def test_probation_publishes_after_min_hits(image, kind):
    m = TrackManager(_cfg(kind=kind, min_hits=3), cores=4, clock=StepClock())
    assert m.step(1, image, _det(1, FACE)) == []
    assert m.step(2, image, _det(2, FACE)) == []
    (track,) = m.step(3, image, _det(3, FACE))
    assert track.state == "confirmed" and track.id == 1 and track.age == 2
    assert iou_matrix(np.array(track.box), FACE)[0, 0] > 0.85  # filters start on sides ~10 % apart
    assert m.counters["tracks_started"] == 1 and m.counters["tracks_confirmed"] == 1


def test_tentative_track_is_dropped_at_its_first_miss(image):
    m = TrackManager(_cfg(min_hits=3), cores=4, clock=StepClock())
    m.step(1, image, _det(1, FACE))
    m.step(2, image, _det(2))
    assert m.counters["tracks_ended"] == 1
    m.step(3, image, _det(3, FACE))
    m.step(4, image, _det(4, FACE))
    (track,) = m.step(5, image, _det(5, FACE))
    assert track.id == 2


def test_future_detections_wait_stale_ones_are_dropped(image):
    m = TrackManager(_cfg(min_hits=1, history=8), cores=4, clock=StepClock())
    assert m.step(1, image, _det(3, FACE)) == []  # computed on a frame not seen yet: kept
    assert m.step(2, image, None) == []
    assert len(m.step(3, image, None)) == 1
    m.step(4, image, _det(2, FACE))  # older than the last applied one
    m.step(20, image, _det(5, FACE))  # older than the history
    assert m.counters["detections_stale"] == 2 and m.counters["detections_applied"] == 1
    with pytest.raises(ValueError):
        m.step(20, image, None)


def test_failure_marks_lost_until_a_detection_recovers_it(image):
    m = TrackManager(_cfg(kind="mosse", min_hits=1), cores=4, clock=StepClock())
    m.step(1, image, _det(1, FACE))
    blank = np.zeros_like(image)
    (track,) = m.step(2, blank, None)  # nothing to correlate with: MOSSE reports failure
    assert track.state == "lost" and m.counters["failures"] == 1
    (track,) = m.step(3, image, None)
    assert track.state == "lost", "a failed tracker stays lost until a detection"
    (track,) = m.step(4, image, _det(4, FACE))
    assert track.state == "confirmed" and track.id == 1 and m.counters["recoveries"] == 1
    (track,) = m.step(5, image, None)
    assert track.state == "confirmed"


def test_none_kind_holds_the_detection_and_loses_unmatched_tracks(image):
    m = TrackManager(_cfg(kind="none", min_hits=1), cores=4, clock=StepClock())
    (track,) = m.step(1, image, _det(1, FACE))
    (track,) = m.step(2, image, _det(2, FACE + 4))
    np.testing.assert_allclose(track.box, FACE + 4)
    (track,) = m.step(3, image, _det(3))
    assert track.state == "lost"
    for fid in range(4, 14):
        tracks = m.step(fid, image, None)
    assert tracks == [] and m.counters["tracks_ended"] == 1


@pytest.mark.parametrize("shift, unseen, rematch, same", [
    (60, 1, 1.5, True),    # 1.3 face sizes away, IoU 0: second chance at 1.5 x 1.1
    (60, 1, 0.0, False),   # second chance off
    (100, 1, 1.5, False),  # 2.2 face sizes: too far for a face seen a frame ago
    (100, 10, 1.5, True),  # ... but not for one unseen for 10 frames (gate 1.5 x 2)
    (120, 60, 1.5, True),  # 2.7 face sizes after 2 s unseen: within the widest gate (1.5 x 2)
    (200, 60, 1.5, False),  # 4.5: the gate stops widening (uncapped it would be 1.5 x 7)
])
def test_second_chance_rejoins_a_face_iou_cannot_pair(image, shift, unseen, rematch, same):
    m = TrackManager(_cfg(kind="none", min_hits=1, rematch_dist=rematch, max_lost_s=3.0), cores=4, clock=StepClock())
    box = np.array([100, 100, 140, 150.0])
    (first,) = m.step(1, image, _det(1, box))
    for fid in range(2, 1 + unseen):
        m.step(fid, image, None)
    tracks = m.step(1 + unseen, image, _det(1 + unseen, box + [shift, 0, shift, 0]))
    assert any(t.id == first.id and t.state == "confirmed" for t in tracks) is same
    assert m.counters["rematches"] == int(same)


def test_reset_forgets_tracks_and_frames_but_ids_go_on(image):
    m = TrackManager(_cfg(min_hits=1), cores=4, clock=StepClock())
    (track,) = m.step(10, image, _det(10, FACE))
    m.reset()
    assert m.step(0, image, None) == []  # frame ids may start again
    (again,) = m.step(1, image, _det(1, FACE))
    assert again.id == track.id + 1


@settings(max_examples=300, deadline=None)
@given(st.floats(-50, 700), st.floats(-50, 530), st.floats(1, 400), st.floats(1, 400))
def test_filters_start_on_square_ladder_templates_inside_the_image(x, y, w, h):
    """A filter's template is a square whose side comes from the SIDES ladder (KCF keeps
    memory per size seen), inside the image, centred on the box, its area within ~10 % of
    the box's; the box's own size inside the image is kept for reporting."""
    from common.tracking.trackers import MIN_SIDE, SIDES, _template

    shape = (480, 640, 3)
    found = _template(np.array([x, y, x + w, y + h]), shape)
    inside = (min(640, x + w) - max(0, x), min(480, y + h) - max(0, y))
    if min(inside) < MIN_SIDE:
        assert found is None
        return
    (rx, ry, rw, rh), size = found
    assert np.allclose(size, inside)
    assert rw == rh and 0 <= rx and rx + rw <= 640 and 0 <= ry and ry + rh <= 480
    area = inside[0] * inside[1]
    assert rw in SIDES or abs(rw - area ** 0.5) <= 0.5
    if rw in SIDES and rw < 480:
        assert abs(rw ** 2 - area) <= max(0.22 * area, 2 * 4 * area ** 0.5)
    cx, cy = (max(0, x) + min(640, x + w)) / 2, (max(0, y) + min(480, y + h)) / 2
    if rw / 2 <= cx <= 640 - rw / 2 and rw / 2 <= cy <= 480 - rw / 2:  # not pushed in by an edge
        assert abs(rx + rw / 2 - cx) <= 1 and abs(ry + rh / 2 - cy) <= 1
