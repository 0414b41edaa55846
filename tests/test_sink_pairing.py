"""Pairing frames with their tracks: every tracks frame id is paired or counted once."""
from __future__ import annotations

from common.messages import Frame, Track, Tracks
from services.sinks.drawing import track_colour
from services.sinks.pairing import FramePairer, Paired
from services.sinks.recorder import mot_lines


def frame(k: int, pos: int | None = None) -> Frame:
    return Frame(stack="t", frame_id=k, slot=k % 4, seq=2, ring_id=1, t_capture=float(k), width=8,
                 height=8, source_pos=k if pos is None else pos)


def tracks(k: int, *boxes) -> Tracks:
    return Tracks(frame_id=k, t_capture=float(k), t_tracked=k + 0.5,
                  tracks=[Track(id=i + 1, box=list(b), score=0.5, state="confirmed") for i, b in enumerate(boxes)])


def test_tracks_find_their_frame_after_later_frames_arrived():
    p = FramePairer(capacity=8)
    for k in range(3):
        p.add_frame(frame(k))
    assert p.match(tracks(0)).frame_id == 0
    assert p.match(tracks(1)).frame_id == 1
    assert p.dropped == 0 and list(p.frames) == [2]


def test_gaps_missing_frames_and_skips_are_each_counted_once():
    p = FramePairer(capacity=8)
    for k in (0, 1, 2, 3, 5, 6):  # frame 4 never published
        p.add_frame(frame(k))
    p.match(tracks(0))
    assert p.match(tracks(3)).frame_id == 3  # tracks 1, 2 lost: a gap of 2; frames 1, 2 forgotten
    assert p.match(tracks(4)) is None  # tracks without a frame
    p.skip(tracks(5))
    assert p.match(tracks(6)).frame_id == 6
    assert (p.gap, p.missing, p.skipped, p.dropped) == (2, 1, 1, 4)
    assert p.frames == {}


def test_capacity_bounds_frames_whose_tracks_never_come():
    p = FramePairer(capacity=4)
    for k in range(100):
        p.add_frame(frame(k))
    assert list(p.frames) == [96, 97, 98, 99]
    assert p.match(tracks(50)) is None


def test_a_restarted_numbering_counts_no_gap():
    p = FramePairer(capacity=8)
    p.add_frame(frame(500))
    p.match(tracks(500))
    p.add_frame(frame(0))
    assert p.match(tracks(0)).frame_id == 0
    assert p.dropped == 0


def test_mot_lines_use_source_position_and_width_height():
    paired = Paired(frame(7, pos=41), tracks(7, [10.0, 20.0, 50.5, 80.0]))
    assert mot_lines(paired) == "42,1,10.00,20.00,40.50,60.00,0.5000,-1,-1,-1\n"


def test_track_colours_are_stable_and_distinct():
    colours = [track_colour(i) for i in range(1, 9)]
    assert colours == [track_colour(i) for i in range(1, 9)]
    assert len(set(colours)) == 8
