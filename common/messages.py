"""Every message on the bus, defined once: typed dataclasses, msgpack on the wire.

A message travels as two ZMQ frames: the topic (ASCII) and one msgpack map with a version
field `v`. `decode()` checks the topic, the version and every field's type, so a malformed
or foreign message raises `MessageError` (one line) instead of crashing a service later.
Pixels never travel here: a `Frame` names a slot and sequence number of the shared-memory
ring (common/frame_ring.py).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

import msgpack

VERSION = 1


class MessageError(ValueError):
    """A message that cannot be used: malformed, wrong version or wrong fields."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A new frame in the ring: published by capture for every frame.

    `ring_id` names the ring instance (a restarted capture makes a new one), `source_pos` is
    the frame's index in its source (files loop; frame_id never goes back).
    """
    TOPIC: typing.ClassVar[bytes] = b"frame"
    stack: str
    frame_id: int
    slot: int
    seq: int
    ring_id: int
    t_capture: float
    width: int
    height: int
    source_pos: int
    fmt: str = "bgr24"
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class Detections:
    """Faces found on frame `frame_id` (which may be several frames old when it arrives).

    boxes are [x1, y1, x2, y2] in pixels of the frame; keypoints are 6 (x, y) per face.
    """
    TOPIC: typing.ClassVar[bytes] = b"detections"
    frame_id: int
    t_capture: float
    t_in: float
    t_out: float
    boxes: list[list[float]]
    scores: list[float]
    keypoints: list[list[list[float]]]
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class Track:
    id: int
    box: list[float]
    score: float
    state: str  # "confirmed" | "lost"
    age: int = 0


@dataclass(frozen=True, slots=True)
class Tracks:
    """The published tracks of one frame; `detect_every` is the tracker's wish for the detector."""
    TOPIC: typing.ClassVar[bytes] = b"tracks"
    frame_id: int
    t_capture: float
    t_tracked: float
    tracks: list[Track]
    detect_every: int = 1
    detected: bool = False
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on track `track_id`, from an embedding of its face on frame `frame_id`.

    Published when a track is first embedded, when a better view changes the answer, when the
    gallery changes, and again once a period for every live track, so a sink that joins late
    learns the names. `name` is "unknown" when no gallery face is within the threshold;
    `distance` is the Euclidean distance to the nearest gallery face (-1 with an empty gallery).
    With re-identification on, `same_as` names the ended track this one continues (-1: none);
    a name that came only from that track has the distance to that track's face.
    """
    TOPIC: typing.ClassVar[bytes] = b"identity"
    track_id: int
    frame_id: int
    name: str
    distance: float
    t: float
    same_as: int = -1
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class Latency:
    """Per-frame latency between two points of the pipeline over the stage's window (ms)."""
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class Metrics:
    """One service's health, once per monitor period.

    `latency_ms` maps a path between two pipeline points (e.g. `capture_to_tracked`, from
    Frame.t_capture to Tracks.t_tracked) to its percentiles; `extra` holds the stage's other
    numbers (queue depth, skipped frames, board temperature ...).
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
    extra: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, Latency] = field(default_factory=dict)
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class FrameRequest:
    """A remote detector is free: the next frame it should work on, please.

    Sent by services/remote_detector.py to the board's frame forwarder (services/frame_forwarder.py)
    over their own tcp channel, never on the bus; `detector` names the sender in logs.
    """
    TOPIC: typing.ClassVar[bytes] = b"frame_request"
    detector: str
    t: float
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class EncodedFrame:
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


MESSAGES: dict[bytes, type] = {cls.TOPIC: cls for cls in (Frame, Detections, Tracks, Identity, Metrics,
                                                          FrameRequest, EncodedFrame)}

_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "bytes": (bytes,)}


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def encode(msg) -> list[bytes]:
    """Two ZMQ frames: topic, msgpack body."""
    return [msg.TOPIC, msgpack.packb(_plain(msg), use_bin_type=True)]


def _is_number_tree(value, depth: int) -> bool:
    if depth == 0:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, list) and all(_is_number_tree(v, depth - 1) for v in value)


def _check(cls, name: str, annotation: str, value):
    """Validate one field against its annotation string; return the value to store."""
    where = f"{cls.__name__}.{name}"
    if annotation in _SCALARS:
        ok = isinstance(value, _SCALARS[annotation]) and (annotation == "bool" or not isinstance(value, bool))
        if not ok:
            raise MessageError(f"{where}: expected {annotation}, got {type(value).__name__}")
        return float(value) if annotation == "float" else value
    if annotation.startswith("list[") and annotation.count("list[") <= 3 and "float" in annotation:
        if not _is_number_tree(value, annotation.count("list[")):
            raise MessageError(f"{where}: expected {annotation}")
        return value
    if annotation == "list[Track]":
        if not isinstance(value, list):
            raise MessageError(f"{where}: expected a list of tracks")
        return [_build(Track, t) for t in value]
    if annotation == "dict[str, Latency]":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise MessageError(f"{where}: expected a map of paths to latencies")
        return {k: _build(Latency, v) for k, v in value.items()}
    if annotation == "dict[str, float]":
        if not isinstance(value, dict) or not all(isinstance(k, str) and _is_number_tree(v, 0) for k, v in value.items()):
            raise MessageError(f"{where}: expected a map of names to numbers")
        return value
    raise MessageError(f"{where}: unsupported field type {annotation}")


def _build(cls, body):
    if not isinstance(body, dict):
        raise MessageError(f"{cls.__name__}: body is not a map")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(body) - set(fields)
    if unknown:
        raise MessageError(f"{cls.__name__}: unknown fields {sorted(map(str, unknown))}")
    values = {}
    for name, f in fields.items():
        if name not in body:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MessageError(f"{cls.__name__}: missing field '{name}'")
            continue
        values[name] = _check(cls, name, f.type, body[name])
    return cls(**values)


def decode(frames: typing.Sequence[bytes]):
    """Parse [topic, body] into its dataclass; raise MessageError naming what is wrong."""
    if len(frames) != 2:
        raise MessageError(f"expected 2 message parts (topic, body), got {len(frames)}")
    topic, body = frames
    cls = MESSAGES.get(bytes(topic))
    if cls is None:
        raise MessageError(f"unknown topic {bytes(topic)[:32]!r}")
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise MessageError(f"{cls.__name__}: body is not msgpack ({type(exc).__name__})") from None
    if isinstance(data, dict) and data.get("v") != VERSION:
        raise MessageError(f"{cls.__name__}: version {data.get('v')!r} not supported (expected {VERSION})")
    msg = _build(cls, data)
    check = _SEMANTIC_CHECKS.get(cls)
    if check is not None:
        check(msg)
    return msg


def _finite_box(where: str, box) -> None:
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise MessageError(f"{where}: a box is 4 finite numbers [x1, y1, x2, y2], got {box!r:.80}")


def _check_detections(msg: Detections) -> None:
    """Shapes the types alone do not say: a receiver indexes these without more checks."""
    for box in msg.boxes:
        _finite_box("Detections.boxes", box)
    if len(msg.scores) != len(msg.boxes):
        raise MessageError(f"Detections: {len(msg.scores)} scores for {len(msg.boxes)} boxes")
    if msg.keypoints and len(msg.keypoints) != len(msg.boxes):
        raise MessageError(f"Detections: {len(msg.keypoints)} keypoint sets for {len(msg.boxes)} boxes")


def _check_tracks(msg: Tracks) -> None:
    for track in msg.tracks:
        _finite_box("Tracks.tracks.box", track.box)
    if msg.detect_every < 1:
        raise MessageError(f"Tracks.detect_every: must be >= 1, got {msg.detect_every}")


def _check_frame(msg: Frame) -> None:
    if msg.slot < 0 or msg.width <= 0 or msg.height <= 0:
        raise MessageError(f"Frame: slot/width/height out of range ({msg.slot}, {msg.width}, {msg.height})")


_SEMANTIC_CHECKS = {Detections: _check_detections, Tracks: _check_tracks, Frame: _check_frame}
