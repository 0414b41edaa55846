"""IdentityBook: which detections get embedded, for which track, and what is published."""
from __future__ import annotations


import numpy as np

from common.config import IdentityConfig, replace
from common.gallery import Snapshot
from common.identities import IdentityBook
from common.messages import Detections, Track, Tracks

CFG = IdentityConfig(threshold=0.5, better_view=1.3, max_embeds_per_track=3, match_iou=0.3)
ALICE = np.zeros(128, np.float32)
GALLERY = Snapshot(["alice"], ALICE[None])


def tracks(frame_id, *boxes, state="confirmed", born=0, first_id=1, t=0.0, run=1):
    return Tracks(frame_id=frame_id, t_capture=0.0, t_tracked=t, run_id=run,
                  tracks=[Track(id=first_id + i, box=list(b), score=1.0, state=state, age=frame_id - born)
                          for i, b in enumerate(boxes)])


def detections(frame_id, *boxes):
    return Detections(frame_id=frame_id, t_capture=0.0, t_in=0.0, t_out=0.0, boxes=[list(b) for b in boxes],
                      scores=[0.9] * len(boxes), keypoints=[[[0.0, 0.0]] * 6] * len(boxes))


def test_a_detection_is_matched_on_its_own_frame_not_the_latest():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(10, (0, 0, 50, 50), (100, 0, 150, 50)))
    book.on_tracks(tracks(13, (100, 0, 150, 50), (0, 0, 50, 50)))  # the faces swapped places since
    cands = book.candidates(detections(10, (2, 0, 52, 50)), [20.0])
    assert [(c.track_id, c.frame_id) for c in cands] == [(1, 10)]


def test_only_confirmed_tracks_and_usable_views_are_candidates():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(1, (0, 0, 50, 50), state="lost"))
    assert book.candidates(detections(1, (0, 0, 50, 50)), [20.0]) == []
    book.on_tracks(tracks(2, (0, 0, 50, 50)))
    assert book.candidates(detections(2, (0, 0, 50, 50)), [0.0]) == []  # too small / no view
    assert book.candidates(detections(2, (200, 200, 250, 250)), [20.0]) == []  # no overlap


def test_a_track_is_embedded_again_only_for_a_clearly_better_view_and_a_bounded_number_of_times():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(1, (0, 0, 50, 50)))
    embedded = 0
    for frame, quality in enumerate([10, 10, 12, 13.5, 13.6, 20, 30, 100, 1000], start=1):
        book.on_tracks(tracks(frame, (0, 0, 50, 50)))
        for cand in book.candidates(detections(frame, (0, 0, 50, 50)), [quality]):
            assert book.embedded(cand, ALICE, GALLERY, t=0.0).name == "alice"
            embedded += 1
    # 10 (first), 13.5 (> 10 * 1.3), 20 (> 13.5 * 1.3): then the cap of 3 holds
    assert embedded == 3
    assert book.states[1].best_quality == 20


def test_ended_tracks_are_forgotten_and_a_late_embedding_of_one_is_not_published():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(1, (0, 0, 50, 50)))
    [cand] = book.candidates(detections(1, (0, 0, 50, 50)), [10.0])
    book.embedded(cand, ALICE, GALLERY, t=0.0)
    assert book.on_tracks(tracks(2)) == [1]
    assert book.states == {}
    book.on_tracks(tracks(3, (0, 0, 50, 50)))
    [cand] = book.candidates(detections(3, (0, 0, 50, 50)), [10.0])
    book.on_tracks(tracks(4))
    assert book.embedded(cand, ALICE, GALLERY, t=0.0) is None


def test_a_reused_track_id_is_a_new_track():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(5, (0, 0, 50, 50)))
    [cand] = book.candidates(detections(5, (0, 0, 50, 50)), [10.0])
    book.embedded(cand, ALICE, GALLERY, t=0.0)
    assert book.on_tracks(tracks(6, (0, 0, 50, 50))) == []
    assert book.on_tracks(tracks(7, (0, 0, 50, 50), born=7, run=2)) == [1]  # the tracker restarted: a new run
    assert book.states == {}
    [cand] = book.candidates(detections(7, (0, 0, 50, 50)), [10.0])
    book.embedded(cand, ALICE, GALLERY, t=0.0)
    assert book.on_tracks(tracks(8, (0, 0, 50, 50), born=7, run=2)) == []
    assert [m.run_id for m in book.current(0.0)] == [2]  # names the run of its track


def test_a_face_queued_before_a_tracker_restart_is_not_given_to_the_new_runs_id():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(5, (0, 0, 50, 50)))
    [cand] = book.candidates(detections(5, (0, 0, 50, 50)), [10.0])  # queued, not embedded yet
    book.on_tracks(tracks(1, (200, 0, 250, 50), run=2))  # restarted: id 1 is someone else now
    assert book.embedded(cand, ALICE, GALLERY, t=0.0) is None
    assert book.states == {}



def test_the_descriptor_to_enrol_is_named_by_tracker_run_and_id_live_or_ended():
    bob = np.full(128, 0.1, np.float32)
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(5, (0, 0, 50, 50)))  # run 1, track 1: Alice's face
    [cand] = book.candidates(detections(5, (0, 0, 50, 50)), [10.0])
    book.embedded(cand, ALICE, GALLERY, t=0.0)
    assert book.descriptor_of(1, 1) is ALICE  # live
    assert book.descriptor_of(2, 1) is None  # no such run
    book.on_tracks(tracks(1, (200, 0, 250, 50), run=2))  # restarted: run 2's track 1 is someone else
    assert book.descriptor_of(1, 1) is ALICE  # the ended run's track, still there to be named
    assert book.descriptor_of(2, 1) is None  # live, never embedded: nothing to enrol, never Alice's face
    [cand] = book.candidates(detections(1, (200, 0, 250, 50)), [10.0])
    book.embedded(cand, bob, GALLERY, t=0.0)
    assert book.descriptor_of(2, 1) is bob and book.descriptor_of(1, 1) is ALICE
    book.on_tracks(tracks(2, run=2))  # run 2's track 1 ended too
    assert book.descriptor_of(2, 1) is bob and book.descriptor_of(1, 1) is ALICE

def test_a_new_gallery_renames_live_tracks_and_reports_only_changes():
    book = IdentityBook(CFG, history=64)
    book.on_tracks(tracks(1, (0, 0, 50, 50)))
    [cand] = book.candidates(detections(1, (0, 0, 50, 50)), [10.0])
    empty = Snapshot([], np.zeros((0, 128), np.float32))
    first = book.embedded(cand, ALICE, empty, t=0.0)
    assert (first.name, first.distance) == ("unknown", -1.0)
    [renamed] = book.rematch(GALLERY, t=1.0)
    assert (renamed.track_id, renamed.name, renamed.frame_id) == (1, "alice", 1)
    assert book.rematch(GALLERY, t=2.0) == []
    assert [m.name for m in book.current(t=3.0)] == ["alice"]


def test_distance_decides_the_name_at_the_threshold():
    far = ALICE + 0.6 / np.sqrt(128)
    near = ALICE + 0.4 / np.sqrt(128)
    assert GALLERY.match(far, 0.5).name == "unknown"
    assert GALLERY.match(near, 0.5).name == "alice"
    assert abs(GALLERY.match(near, 0.5).distance - 0.4) < 1e-5


def _embed_new_track(book, frame, track_id, descriptor, gallery, t):
    book.on_tracks(tracks(frame, (0, 0, 50, 50), first_id=track_id, born=frame, t=t))
    [cand] = book.candidates(detections(frame, (0, 0, 50, 50)), [10.0])
    return book.embedded(cand, descriptor, gallery, t=t)


def test_reidentification_continues_an_ended_track_within_the_window():
    book = IdentityBook(replace(CFG, reid=True, reid_window_s=10.0), history=64)
    u = np.ones(128, np.float32) / np.sqrt(128)
    assert _embed_new_track(book, 1, 1, ALICE + 0.3 * u, GALLERY, t=0.0).name == "alice"
    book.on_tracks(tracks(2, t=1.0))  # track 1 ends
    # A worse view: too far from the gallery to be named by it, close to track 1's face.
    again = _embed_new_track(book, 3, 2, ALICE + 0.6 * u, GALLERY, t=2.0)
    assert (again.track_id, again.name, again.same_as) == (2, "alice", 1)
    assert abs(again.distance - 0.3) < 1e-5  # the distance to track 1's face, which named it
    book.on_tracks(tracks(4, t=3.0))  # track 2 ends; a stranger comes
    stranger = _embed_new_track(book, 5, 3, ALICE + 5.0 * u, GALLERY, t=4.0)
    assert (stranger.name, stranger.same_as) == ("unknown", -1)


def test_reidentification_forgets_after_the_window_and_is_off_by_default():
    book = IdentityBook(replace(CFG, reid=True, reid_window_s=10.0), history=64)
    _embed_new_track(book, 1, 1, ALICE, GALLERY, t=0.0)
    book.on_tracks(tracks(2, t=1.0))
    book.on_tracks(tracks(3, t=12.0))
    assert _embed_new_track(book, 4, 2, ALICE, GALLERY, t=12.5).same_as == -1
    off = IdentityBook(CFG, history=64)
    _embed_new_track(off, 1, 1, ALICE, GALLERY, t=0.0)
    off.on_tracks(tracks(2, t=1.0))
    assert off.departed == [] and _embed_new_track(off, 3, 2, ALICE, GALLERY, t=2.0).same_as == -1
