"""`faces://N`: the public-domain multi-face scene, its exact boxes, and the real detector on it."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from common.config import CaptureConfig
from common.service import InputError
from models.accuracy import iou_matrix
from models.build import build
from models.runtime import load_detector
from models.weights import fetch
from services.sources import open_source
from services.sources.composed_faces import FaceScene, export


def _xyxy(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([x, y, x + w, y + h], np.float32)


@pytest.fixture(scope="module")
def detector():
    fetch()
    build(["full"], ["llvm"])
    return load_detector("full", "tvm", num_threads=1)


def test_source_gives_the_scene_and_loops():
    source = open_source(CaptureConfig(source="faces://3"), threading.Event())
    info = source.open()
    assert (info.width, info.height, info.live) == (640, 480, False)
    first, pos = source.read()
    np.testing.assert_array_equal(first, FaceScene(3).render(0))
    assert pos == 0
    while (frame := source.read()) is not None:
        last = frame[1]
    assert last == FaceScene(3).frames - 1
    source.rewind()
    np.testing.assert_array_equal(source.read()[0], first)


@pytest.mark.parametrize("uri,says", [("faces://0", "between 1 and 8 faces"), ("faces://9", "between 1 and 8 faces"),
                                      ("faces://many", "is not a number")])
def test_bad_face_count_is_one_line_naming_the_source(uri, says):
    with pytest.raises(InputError) as err:
        open_source(CaptureConfig(source=uri), threading.Event()).open()
    assert str(err.value).startswith(f"capture source {uri}:") and says in str(err.value)
    assert "\n" not in str(err.value)


def test_scene_has_the_events_it_promises():
    """Faces leave and come back, and hide behind one another, in one loop of the 8-face scene."""
    scene = FaceScene(8)
    present = np.zeros((scene.frames, 8), bool)
    hidden = np.zeros((scene.frames, 8), bool)
    for k in range(scene.frames):
        for b in scene.boxes(k):
            present[k, b.face_id - 1] = True
            x, y, w, h = b.box
            inside = x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480
            hidden[k, b.face_id - 1] = inside and b.visible < 0.5  # in the frame, mostly behind a nearer face
    gone_and_back = [i for i in range(8) if not present[:, i].all() and present[:, i].any()
                     and present[np.argmax(~present[:, i]):, i].any()]
    assert len(gone_and_back) >= 3, f"faces that leave and come back: {gone_and_back}"
    assert hidden.any(axis=0).sum() >= 3, "at least three faces pass behind another"


def test_detector_finds_the_faces_where_the_boxes_say(detector):
    """Every 25th frame of the 4-face scene: fully visible faces found at IoU >= 0.4, no stray detections."""
    scene = FaceScene(4)
    found = missed = stray = 0
    for k in range(0, scene.frames, 25):
        detections = detector.detect(scene.render(k)).boxes
        truth = scene.boxes(k)
        matched = set()
        for b in (b for b in truth if b.visible >= 0.9):
            iou = iou_matrix(detections, _xyxy(b.box)[None])[:, 0] if len(detections) else np.zeros(0)
            if len(iou) and iou.max() >= 0.4:
                found += 1
                matched.add(int(iou.argmax()))
            else:
                missed += 1
        for j in set(range(len(detections))) - matched:
            if not any(iou_matrix(detections[j:j + 1], _xyxy(b.box)[None])[0, 0] > 0.1 for b in truth):
                stray += 1
    assert found / (found + missed) >= 0.7, (found, missed)
    assert stray == 0


def test_export_writes_a_mot_sequence_that_matches_the_scene(tmp_path):
    seq = export(2, tmp_path / "FACES-2", frames=5)
    rows = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",")
    assert sorted((seq / "img1").iterdir())[0].name == "000001.jpg" and len(list((seq / "img1").iterdir())) == 5
    first = [b for b in FaceScene(2).boxes(0)]
    got = rows[rows[:, 0] == 1]
    np.testing.assert_allclose(got[:, 2:6], [[b.box[0] + 1, b.box[1] + 1, b.box[2], b.box[3]] for b in first], atol=0.01)
    assert "frameRate=30" in (seq / "seqinfo.ini").read_text()
