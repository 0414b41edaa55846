"""Face snapshots (services/sinks/snapshots.py): the best view of each track, made by real sink
processes from real frames in the ring, saved on disk, served by the live view, published by the
MQTT sink to a real mosquitto, and never made by the privacy view."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.config import SnapshotsConfig
from common.messages import Frame, Identity, Track, Tracks
from common.runs import track_key
from models.runtime import load_detector
from mqtt_support import Collector, Mosquitto
from services.sinks.snapshots import SnapshotBook, crop, view_quality
from sink_support import http_get


@pytest.fixture(scope="module")
def detector():
    return load_detector("full", "tvm", num_threads=1)


def faces_in(detector, jpeg: bytes) -> int:
    """Faces the detector finds in a snapshot, set in a grey border as wide as the snapshot: a face
    that fills the picture is closer than BlazeFace's full-range model looks (it finds none)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    h, w = image.shape[:2]
    framed = cv2.copyMakeBorder(image, h, h, w, w, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return len(detector.detect(framed).boxes)


def snapshot_files(stack) -> list:
    return sorted((stack.tmp / "records" / "snapshots").glob("*.jpg"))


def _frame(k: int, w: int = 640, h: int = 480) -> Frame:
    return Frame(stack="s", frame_id=k, slot=0, seq=2, ring_id=1, t_capture=1000.0 + k, width=w, height=h, source_pos=k)


def _tracks(k: int, *tracks: Track) -> Tracks:
    return Tracks(frame_id=k, t_capture=1000.0 + k, t_tracked=1000.0 + k, tracks=list(tracks))


def test_book_keeps_the_best_view_and_reads_pixels_only_for_it(tmp_path):
    book = SnapshotBook(SnapshotsConfig(min_interval_s=0.0, better_view=1.2), tmp_path, "s")
    image = np.full((480, 640, 3), 128, np.uint8)
    reads = []

    def pixels():
        reads.append(1)
        return image

    small = Track(id=3, box=[100, 100, 160, 160], score=0.9, state="confirmed")
    similar = Track(id=3, box=[100, 100, 162, 162], score=0.9, state="confirmed")
    large = Track(id=3, box=[100, 100, 220, 220], score=0.9, state="confirmed")
    assert [s.track_id for s in book.see(_frame(0), _tracks(0, small), pixels)] == [3]
    assert book.see(_frame(1), _tracks(1, similar), pixels) == [] and len(reads) == 1  # not 1.2x better
    [better] = book.see(_frame(2), _tracks(2, large), pixels)
    assert better.frame_id == 2 and better.quality == pytest.approx(120 * 0.9)
    assert better.path.read_bytes() == better.jpeg and len(list(tmp_path.glob("*.jpg"))) == 1
    # lost tracks and tiny faces make none; an ended track's snapshot is still found
    lost = Track(id=4, box=[0, 0, 100, 100], score=0.9, state="lost")
    tiny = Track(id=5, box=[0, 0, 10, 10], score=0.9, state="confirmed")
    assert book.see(_frame(3), _tracks(3, lost, tiny), pixels) == []
    assert book.get(track_key(0, 3)) is better and book.get(track_key(0, 4)) is None and book.get(track_key(0, 5)) is None


def test_a_view_is_written_once(tmp_path):
    """A track hidden by the tracker for a frame and back under its id keeps its snapshot and file;
    a second sink process of the stack making the same crop of the same frame does not write it again."""
    cfg = SnapshotsConfig(min_interval_s=0.0, better_view=1.2)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    face = Track(id=3, box=[100, 100, 180, 180], score=0.9, state="confirmed")
    scene = [_tracks(0, face), _tracks(1, face), _tracks(2), _tracks(3, face), _tracks(4, face)]
    books = [SnapshotBook(cfg, tmp_path, "s") for _ in range(2)]  # the live view's and the MQTT sink's
    made = [[s for k, tracks in enumerate(scene) for s in book.see(_frame(k), tracks, lambda: image)]
            for book in books]
    assert [[s.frame_id for s in m] for m in made] == [[0], [0]]  # the view of frame 0, once each, not again on 3
    assert len(list(tmp_path.glob("*.jpg"))) == 1
    assert [book.written for book in books] == [1, 0]
    assert books[1].get(track_key(0, 3)).jpeg == made[0][0].path.read_bytes()


def test_an_identity_view_takes_that_frames_face_and_only_a_better_one_replaces_it(tmp_path):
    book = SnapshotBook(SnapshotsConfig(min_interval_s=0.0), tmp_path, "s")
    images = {k: np.full((480, 640, 3), 10 * k, np.uint8) for k in range(6)}  # frame k is grey 10k
    face = Track(id=3, box=[100, 100, 160, 160], score=0.9, state="confirmed")
    bigger = Track(id=3, box=[100, 100, 300, 300], score=0.9, state="confirmed")

    def step(k, track):
        frame, tracks = _frame(k), _tracks(k, track)
        book.remember(frame)
        book.remember(tracks)
        return book.see(frame, tracks, lambda: images[k])

    def pixels(frame):
        return images[frame.frame_id]

    def grey(snapshot):
        return int(cv2.imdecode(np.frombuffer(snapshot.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).mean().round())

    assert [s.scored_by for s in step(0, face)] == ["size"]
    step(1, face)
    chosen = book.identity_view(Identity(track_id=3, frame_id=1, name="ada", distance=0.3, t=0, quality=20.0), pixels)
    assert chosen is not None and (chosen.frame_id, chosen.scored_by, grey(chosen)) == (1, "identity", 10)
    assert book.get(track_key(0, 3)) is chosen
    assert step(2, bigger) == []  # a larger box no longer replaces an identity view
    again = Identity(track_id=3, frame_id=1, name="ada", distance=0.3, t=1, quality=20.0)  # the republished one
    assert book.identity_view(again, pixels) is None
    better = book.identity_view(Identity(track_id=3, frame_id=2, name="ada", distance=0.2, t=2, quality=30.0), pixels)
    assert better is not None and grey(better) == 20 and better.box == (100, 100, 300, 300)  # frame 2's box
    gone = Identity(track_id=3, frame_id=999, name="ada", distance=0.2, t=3, quality=50.0)  # a frame never seen
    assert book.identity_view(gone, pixels) is None and book.stats()["snapshot_identity_missed"] == 1
    assert book.identity_view(Identity(track_id=9, frame_id=2, name="x", distance=0.2, t=3, quality=50.0),
                              pixels) is None  # no such live track


def test_quality_counts_only_the_visible_part_of_a_face():
    inside = Track(id=1, box=[0, 0, 100, 100], score=1.0, state="confirmed")
    half_out = Track(id=1, box=[-50, 0, 50, 100], score=1.0, state="confirmed")
    assert view_quality(inside, 640, 480) == pytest.approx(100)
    assert view_quality(half_out, 640, 480) == pytest.approx(np.sqrt(50 * 100))


def test_live_view_serves_and_saves_a_face_snapshot(stack, detector):
    sink = stack.sink("--kind", "live", "--port", "0")
    url = sink.url()
    stack.publish_until(lambda: http_get(url + "snapshots/1.jpg")[0] == 200)
    status, jpeg, content_type = http_get(url + "snapshots/1.jpg")
    assert content_type == "image/jpeg"
    assert faces_in(detector, jpeg) >= 1, "the snapshot shows no face"
    files = snapshot_files(stack)
    assert files and all(f.name.startswith(f"{stack.stack_id}-") and f.name.endswith("-1.jpg") for f in files)
    assert faces_in(detector, files[-1].read_bytes()) >= 1
    assert http_get(url + "snapshots/7.jpg")[0] == 404  # track 7 is only ever lost
    assert http_get(url + "snapshots/x.jpg")[0] == 404
    made = stack.wait_metrics("sink-live", lambda m: m.extra.get("snapshots_made", 0) >= 1)
    assert made.extra["snapshot_write_errors"] == 0


def test_live_view_takes_the_identity_services_view(stack):
    """The test plays the identity service too: its Identity message names frame k's view of track 1."""
    sink = stack.sink("--kind", "live", "--port", "0")
    url = sink.url()
    stack.publish_until(lambda: http_get(url + "snapshots/1.jpg")[0] == 200)
    k = stack.publish(pos=40)  # the face half behind the book: a view the size rule would not prefer
    stack.publisher.send(Identity(track_id=1, frame_id=k, name="unknown", distance=-1.0, t=0.0, quality=30.0))
    expected = crop(stack.images[40], stack.gt[40], SnapshotsConfig().margin)
    m = stack.wait_metrics("sink-live", lambda m: m.extra.get("snapshot_identity_views", 0) >= 1)
    assert m.extra["snapshot_identity_missed"] == 0
    stack.publish_n(60)  # larger, clearer views by size follow: they no longer replace it
    served = cv2.imdecode(np.frombuffer(http_get(url + "snapshots/1.jpg")[1], np.uint8), cv2.IMREAD_COLOR)
    assert served.shape == expected.shape
    assert np.abs(served.astype(int) - expected).mean() < 4  # frame 40's face (JPEG aside)


def test_a_restarted_live_view_serves_snapshots_from_disk(stack):
    first = stack.sink("--kind", "live", "--port", "0")
    url = first.url()
    stack.publish_until(lambda: http_get(url + "snapshots/1.jpg")[0] == 200)
    saved = snapshot_files(stack)[-1].read_bytes()
    first.stop()
    second = stack.sink("--kind", "live", "--port", "0", "--set=snapshots.enabled=false")
    assert http_get(second.url() + "snapshots/1.jpg")[1] == saved


@pytest.mark.parametrize("args", [("--kind", "privacy", "--port", "0"),
                                  ("--kind", "live", "--port", "0", "--set=snapshots.enabled=false")],
                         ids=["privacy-view", "switched-off"])
def test_no_snapshot_is_made(stack, args):
    sink = stack.sink(*args)
    url = sink.url()
    stack.publish_until(lambda: (http_get(url + "tracks.json")[0] == 200))
    stack.publish_n(30)
    service = f"sink-{args[1]}"
    metrics = stack.wait_metrics(service, lambda m: m.frames_out >= 20)
    assert "snapshots_made" not in metrics.extra
    assert http_get(url + "snapshots/1.jpg")[0] == 404
    assert snapshot_files(stack) == []


def test_mqtt_sink_publishes_the_snapshot_and_names_it_in_events(stack, tmp_path, detector):
    broker = Mosquitto(tmp_path / "mosquitto").start()
    collector = Collector(broker.port, topic="facetrack/#")
    try:
        sink = stack.sink("--kind", "mqtt", f"--set=mqtt.port={broker.port}",
                          f"--set=mqtt.client_id=sink-{stack.stack_id}")
        sink.wait_log("connected to MQTT broker")
        topic = f"facetrack/{stack.stack_id}/snapshot"
        stack.publish_until(lambda: collector.raw(topic) and collector.select("tracks/started", stack.stack_id))
        [started] = collector.select("tracks/started", stack.stack_id)
        assert started["track_id"] == 1 and started["snapshot"]["url"] == f"/snapshots/{track_key(0, 1)}.jpg"
        assert (stack.tmp / "records" / "snapshots" / started["snapshot"]["file"]).is_file()
        jpeg, _ = collector.raw(topic)[0]
        assert faces_in(detector, jpeg) >= 1
        # retained: a client that subscribes later still gets the newest snapshot
        late = Collector(broker.port, topic=topic, persistent=False)
        try:
            late.wait(lambda: late.raw(topic), what="retained snapshot")
            assert late.raw(topic)[0][1] is True
        finally:
            late.close()
        # the track ends: the ended event names the same snapshot file
        stack.tracks_for = lambda pos: []
        stack.publish_until(lambda: collector.select("tracks/ended", stack.stack_id))
        [ended] = collector.select("tracks/ended", stack.stack_id)
        assert ended["snapshot"]["file"] == started["snapshot"]["file"]  # one file per track, replaced by better views
        assert ended["snapshot"]["quality"] >= started["snapshot"]["quality"]
        assert sink.proc.poll() is None
    finally:
        collector.close()
        broker.stop()
