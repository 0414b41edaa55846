"""Bus messages: round trip, version mismatch and malformed bodies."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest

from common.messages import (VERSION, Detections, Frame, GalleryReply, GalleryRequest, Metrics, MessageError, Track,
                             Tracks, decode, encode)

EXAMPLES = [
    Frame(stack="demo", frame_id=12, slot=3, seq=8, ring_id=2**62, t_capture=1.5, width=640, height=480,
          source_pos=12),
    Detections(frame_id=12, t_capture=1.5, t_in=1.6, t_out=1.62, boxes=np.array([[1, 2, 30, 40.5]]),
               scores=np.array([0.9], np.float32), keypoints=np.zeros((1, 6, 2))),
    Tracks(frame_id=13, t_capture=1.53, t_tracked=1.7,
           tracks=[Track(id=4, box=[1.0, 2.0, 3.0, 4.0], score=0.8, state="confirmed", age=3)],
           detect_every=3, detected=True),
    Metrics(service="tracker", pid=42, t=1.0, frames_in=10, frames_out=9, fps=29.9, p50_ms=4.0,
            p99_ms=9.0, dropped=1, errors=0, cpu_percent=12.5, rss_bytes=10**8, extra={"reinits": 2.0}),
    GalleryRequest(request_id="9f2c", action="enrol", name="Ada", track_id=7, thumbnail=b"\xff\xd8jpeg"),
    GalleryReply(request_id="9f2c", ok=False, detail="no face of track 7 was embedded", name="Ada"),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    topic, body = encode(msg)
    assert topic == type(msg).TOPIC
    back = decode([topic, body])
    assert type(back) is type(msg)
    assert encode(back) == [topic, body]


def test_numpy_values_become_plain_lists():
    back = decode(encode(EXAMPLES[1]))
    assert back.boxes == [[1.0, 2.0, 30.0, 40.5]]
    assert back.keypoints[0][5] == [0.0, 0.0]


def _body(msg, **changes):
    data = msgpack.unpackb(encode(msg)[1])
    data.update(changes)
    return msgpack.packb(data)


def test_version_mismatch_is_refused():
    with pytest.raises(MessageError, match=f"version 2 not supported \\(expected {VERSION}\\)"):
        decode([b"frame", _body(EXAMPLES[0], v=2)])


@pytest.mark.parametrize("parts, match", [
    ([b"frame", b"\xc1\xc1"], "not msgpack"),
    ([b"frame", _body(EXAMPLES[0], frame_id="12")], "Frame: frame_id: Expected `int`, got `str`"),
    ([b"frame", _body(EXAMPLES[0], extra=1)], "Frame: Object contains unknown field `extra`"),
    ([b"tracks", _body(EXAMPLES[2], tracks=[{"id": 1}])], "Tracks: tracks\\[0\\]: Object missing required field `box`"),
    ([b"tracks", _body(EXAMPLES[2], tracks=[{"id": 1, "box": [1, 2, 3, 4], "score": 0.5, "state": "gone"}])],
     "Tracks: tracks\\[0\\].state: Invalid enum value 'gone'"),
    ([b"tracks", _body(EXAMPLES[2], tracks=[{"id": 1, "box": [1, 2, 3, float("inf")], "score": 0.5, "state": "lost"}])],
     "a box is 4 finite numbers"),
    ([b"tracks", _body(EXAMPLES[2], detect_every=0)], "Tracks: detect_every: Expected `int` >= 1"),
    ([b"detections", _body(EXAMPLES[1], boxes=[[1, 2, "x", 4]])], "Detections: boxes\\[0\\]\\[2\\]: Expected `float`"),
    ([b"detections", _body(EXAMPLES[1], scores=[])], "Detections: 0 scores for 1 boxes"),
    ([b"detections", _body(EXAMPLES[1], boxes=[[1, 2, 3, 4]] * 2, scores=[0.9] * 2, keypoints=[[[1, 2]], []])],
     "Detections: keypoint sets of different sizes \\[0, 1\\]"),
    ([b"detections", _body(EXAMPLES[1], keypoints=[[[1, 2, 3]] * 6])], "a keypoint is 2 finite numbers"),
    ([b"detections", _body(EXAMPLES[1], keypoints=[[[1, float("nan")]] * 6])], "a keypoint is 2 finite numbers"),
    ([b"metrics", _body(EXAMPLES[3], extra={"a": "b"})], "Metrics: extra\\.\\.\\.: Expected `float`|Metrics: extra"),
    ([b"frame", _body(EXAMPLES[0], width=0)], "Frame: width: Expected `int` >= 1"),
    ([b"nope", b""], "unknown topic"),
    ([b"frame"], "expected 2 message parts"),
    ([b"frame", msgpack.packb([1, 2])], "Frame: Expected `object`, got `array`"),
    # found by test_stack_fuzz: a map key that is not UTF-8 escaped decode() as UnicodeDecodeError
    ([b"frame", b"\x87\xa9N\xbc\xa5\x1c\xf6\xd33\x12\xfa\xb1\x96\xadx\xc28"], "Frame: a key or string is not UTF-8"),
])
def test_malformed_messages_raise_one_line(parts, match):
    with pytest.raises(MessageError, match=match) as err:
        decode(parts)
    assert "\n" not in str(err.value)


def test_bool_is_not_an_int():
    with pytest.raises(MessageError):
        decode([b"frame", _body(EXAMPLES[0], frame_id=True)])
