"""Every message on the bus, defined once: typed msgspec Structs, plain msgpack on the wire.

A message travels as two ZMQ frames: the topic (ASCII) and one msgpack map with a version
field `v`. `decode()` checks the topic, the version, every field's type and the shapes a
receiver relies on (msgspec validates while it decodes), so a malformed or foreign message
raises `MessageError` (one line) instead of crashing a service later. Nothing about the wire
is msgspec's own: a map of plain values that any msgpack library reads and writes
(examples/minimal_sink.py does, with the `msgpack` package).
Pixels never travel here: a `Frame` names a slot and sequence number of the shared-memory
ring (common/frame_ring.py).
"""
from __future__ import annotations

import math
import typing
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

VERSION = 1


class MessageError(ValueError):
    """A message that cannot be used: malformed, wrong version or wrong fields."""


class Frame(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A new frame in the ring: published by capture for every frame.

    `ring_id` names the ring instance (a restarted capture makes a new one), `source_pos` is
    the frame's index in its source (files loop; frame_id never goes back). `lores_seq` is
    not 0 when the camera's ISP also gave a small copy of the frame: it is in the lores ring
    (frame_ring.lores_name) at the same slot with this seq.
    """
    TOPIC: typing.ClassVar[bytes] = b"frame"
    stack: str
    frame_id: int
    slot: Annotated[int, Meta(ge=0)]
    seq: int
    ring_id: int
    t_capture: float
    width: Annotated[int, Meta(gt=0)]
    height: Annotated[int, Meta(gt=0)]
    source_pos: int
    fmt: str = "bgr24"
    lores_seq: int = 0
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class Detections(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Faces found on frame `frame_id` (which may be several frames old when it arrives).

    `ring_id` is the Frame's: the capture run the frame id counts in (0: not known).
    boxes are [x1, y1, x2, y2] in pixels of the frame; keypoints are the same number of (x, y)
    per face (BlazeFace: 6), none for a detector without landmarks (an empty set per face, or
    an empty list).
    """
    TOPIC: typing.ClassVar[bytes] = b"detections"
    frame_id: int
    t_capture: float
    t_in: float
    t_out: float
    boxes: list[list[float]]
    scores: list[float]
    keypoints: list[list[list[float]]]
    ring_id: int = 0
    v: int = VERSION

    def __post_init__(self):
        """Shapes the types alone do not say: a receiver indexes these without more checks."""
        _versioned(self)
        for box in self.boxes:
            _finite_box(box)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"{len(self.scores)} scores for {len(self.boxes)} boxes")
        if len(self.keypoints) and len(self.keypoints) != len(self.boxes):
            raise ValueError(f"{len(self.keypoints)} keypoint sets for {len(self.boxes)} boxes")
        if len({len(kps) for kps in self.keypoints}) > 1:
            raise ValueError(f"keypoint sets of different sizes {sorted({len(kps) for kps in self.keypoints})}")
        for kps in self.keypoints:
            for point in kps:
                if len(point) != 2 or not all(math.isfinite(v) for v in point):
                    raise ValueError(f"a keypoint is 2 finite numbers [x, y], got {list(point)!r:.80}")


class Track(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: int
    box: list[float]
    score: float
    state: Literal["confirmed", "lost"]
    age: int = 0

    def __post_init__(self):
        _finite_box(self.box)


class Tracks(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The published tracks of one frame; `detect_every` is the tracker's wish for the detector.

    `run_id` names the tracker run (common/runs.py): a track id names one face within a run
    only, and frame ids grow within it. The tracker sets it on every message (0: not known).
    """
    TOPIC: typing.ClassVar[bytes] = b"tracks"
    frame_id: int
    t_capture: float
    t_tracked: float
    tracks: list[Track]
    detect_every: Annotated[int, Meta(ge=1)] = 1
    detected: bool = False
    run_id: int = 0
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class Identity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who is on track `track_id`, from an embedding of its face on frame `frame_id`.

    Published when a track is first embedded, when a better view changes the answer, when the
    gallery changes, and again once a period for every live track, so a sink that joins late
    learns the names. `name` is "unknown" when no gallery face is within the threshold;
    `distance` is the Euclidean distance to the nearest gallery face (-1 with an empty gallery).
    With re-identification on, `same_as` names the ended track this one continues (-1: none);
    a name that came only from that track has the distance to that track's face. `quality` is
    the view quality of the face on `frame_id` (models/facerec/quality.py: eye distance x
    frontality x detector score; -1 when unknown): the sinks' snapshots take that frame's face.
    `run_id` is the tracker run of `track_id` and `same_as` (Tracks.run_id).
    """
    TOPIC: typing.ClassVar[bytes] = b"identity"
    track_id: int
    frame_id: int
    name: str
    distance: float
    t: float
    same_as: int = -1
    quality: float = -1.0
    run_id: int = 0
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class Latency(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-frame latency between two points of the pipeline over the stage's window (ms)."""
    p50_ms: float
    p99_ms: float


class Metrics(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One service's health, once per monitor period.

    `latency_ms` maps a path between two pipeline points (e.g. `capture_to_tracked`, from
    Frame.t_capture to Tracks.t_tracked) to its percentiles; `extra` holds the stage's other
    numbers (queue depth, skipped frames, board temperature ...). `program` is the supervisord
    program the process runs as on this board ("" outside supervisord, and for metrics relayed
    from another host: their pid and program are that host's), which is what the watchdog
    acts on; `pid` is for people.
    """
    TOPIC: typing.ClassVar[bytes] = b"metrics"
    service: str
    pid: int
    t: float
    frames_in: int
    frames_out: int
    fps: float
    p50_ms: float
    p99_ms: float
    dropped: int
    errors: int
    cpu_percent: float
    rss_bytes: int
    extra: dict[str, float] = msgspec.field(default_factory=dict)
    latency_ms: dict[str, Latency] = msgspec.field(default_factory=dict)
    program: str = ""
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class StackHealth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The watchdog's word on the whole stack, once per monitor period (services/watchdog.py).

    `expected`: the supervisord programs that should run (autostart, or started by hand and not
    stopped since); `down`: those of them that do not, program -> why (its supervisord state,
    e.g. "STOPPED", "FATAL", "BACKOFF", or "silent" for a running process whose metrics stopped). The consumers (`facetrack monitor`, /healthz, the MQTT status) read it through
    common/health.py, which also calls the watchdog itself down when this message stops.
    """
    TOPIC: typing.ClassVar[bytes] = b"health"
    t: float
    expected: list[str]
    down: dict[str, str]
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class FrameRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A remote detector is free: the next frame it should work on, please.

    Sent by services/remote_detector.py to the board's frame forwarder (services/frame_forwarder.py)
    over their own tcp channel, never on the bus; `detector` names the sender in logs.
    """
    TOPIC: typing.ClassVar[bytes] = b"frame_request"
    detector: str
    t: float
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class EncodedFrame(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A frame's pixels as JPEG, for a detector on another host: the only way pixels leave a board.

    Sent by the frame forwarder over its tcp channel only when `detector.remote` is set; the local
    detector reads the ring and nothing is encoded. `width`/`height` are the frame's size in the
    ring; the JPEG may be smaller (detector.remote_max_side) and boxes are scaled back to the frame.
    """
    TOPIC: typing.ClassVar[bytes] = b"jpeg_frame"
    frame_id: int
    t_capture: float
    width: int
    height: int
    jpeg: bytes
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class GalleryRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A change to the face gallery, asked of the identity service (which owns the gallery file).

    Sent by the live view when someone names a face or edits a person on its pages; answered
    with a GalleryReply carrying the same `request_id`. `enrol`: store the face the identity
    service embedded for track `track_id` of tracker run `run_id` (Tracks.run_id: an id alone
    may name another face after a tracker restart) under `name`, its best view, with
    `thumbnail` (the track's snapshot JPEG) to show on the People page; enrolling a name that
    exists adds a view. `rename`: `name` becomes `new_name`. `remove`: every face of `name`
    (secure delete).
    """
    TOPIC: typing.ClassVar[bytes] = b"gallery_request"
    request_id: Annotated[str, Meta(min_length=1, max_length=64)]
    action: Literal["enrol", "rename", "remove"]
    name: Annotated[str, Meta(max_length=256)]
    track_id: int = -1
    run_id: int = 0
    new_name: Annotated[str, Meta(max_length=256)] = ""
    thumbnail: Annotated[bytes, Meta(max_length=512 * 1024)] = b""
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)


class GalleryReply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The identity service's answer to a GalleryRequest: done (`ok`), or why not, in one line (`detail`)."""
    TOPIC: typing.ClassVar[bytes] = b"gallery_reply"
    request_id: str
    ok: bool
    detail: str
    name: str = ""
    faces: int = 0  # how many faces `name` has in the gallery now
    v: int = VERSION

    def __post_init__(self):
        _versioned(self)



def _versioned(msg) -> None:
    if msg.v != VERSION:
        raise ValueError(f"version {msg.v!r} not supported (expected {VERSION})")


def _finite_box(box) -> None:
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"a box is 4 finite numbers [x1, y1, x2, y2], got {list(box)!r:.80}")


MESSAGES: dict[bytes, type] = {cls.TOPIC: cls for cls in (Frame, Detections, Tracks, Identity, Metrics,
                                                          StackHealth, FrameRequest, EncodedFrame, GalleryRequest,
                                                          GalleryReply)}
_DECODERS: dict[bytes, msgspec.msgpack.Decoder] = {topic: msgspec.msgpack.Decoder(cls) for topic, cls in MESSAGES.items()}


def _plain(value):
    """What msgspec cannot encode itself: numpy arrays and scalars become lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_plain)


def encode(msg) -> list[bytes]:
    """Two ZMQ frames: topic, msgpack body."""
    return [msg.TOPIC, _ENCODER.encode(msg)]


def decode(frames: typing.Sequence[bytes]):
    """Parse [topic, body] into its Struct; raise MessageError naming what is wrong."""
    if len(frames) != 2:
        raise MessageError(f"expected 2 message parts (topic, body), got {len(frames)}")
    topic, body = frames
    decoder = _DECODERS.get(bytes(topic))
    if decoder is None:
        raise MessageError(f"unknown topic {bytes(topic)[:32]!r}")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise MessageError(f"{MESSAGES[bytes(topic)].__name__}: {_where(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise MessageError(f"{MESSAGES[bytes(topic)].__name__}: body is not msgpack ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:  # msgspec lets a key or string that is not UTF-8 through as this
        raise MessageError(f"{MESSAGES[bytes(topic)].__name__}: a key or string is not UTF-8") from None


def _where(text: str) -> str:
    """msgspec's `Expected `int`, got `str` - at `$.frame_id`` as `frame_id: Expected `int`, got `str``."""
    message, _, path = text.rpartition(" - at `$")
    return f"{path.rstrip('`').lstrip('.')}: {message}" if message else text
