"""Enrol the FaceOcc1 woman from three frames with the real CLI; she is named on the rest of
her two clips and nobody else is (OTB-Girl-A and WIDER faces >= 40 px), at the configured
threshold. Rates are per embedded frame (every 5th frame), harsher than per track: the
service keeps a track's best view.

Impostor faces are embedded whatever their size (min_eye_px 1): stricter than the service,
which leaves faces too small to judge "unknown" without embedding them.
"""
from __future__ import annotations

import numpy as np
import pytest

from common.config import load_config
from common.gallery import Gallery
from facetrack.identity_cli import main as cli
from models.facerec.runtime import load_embedder
from models.runtime import load_detector

from identity_probes import DATA, otb_chips, wider_chips

ENROL_FRAMES = (1, 50, 100)
STEP = 5


@pytest.fixture(scope="module")
def detector():
    return load_detector("full", "tvm")


def test_enrolled_person_is_named_and_others_stay_unknown(tmp_path, detector, capsys):
    cfg = load_config()
    gallery_path = tmp_path / "gallery.sqlite"
    images = [str(DATA / "OTB-FaceOcc1-A" / "img1" / f"{f:06d}.jpg") for f in ENROL_FRAMES]
    assert cli(["enroll", "alice", *images, "--gallery", str(gallery_path)]) == 0
    with Gallery(gallery_path) as g:
        snapshot = g.snapshot()
    assert snapshot.names == ["alice"] * len(ENROL_FRAMES)

    embedder = load_embedder(cfg.identity.backend)
    min_eye = cfg.identity.min_eye_px
    genuine = {
        "FaceOcc1-A": otb_chips("OTB-FaceOcc1-A", detector,
                                [f for f in range(1, 301, STEP) if f not in ENROL_FRAMES], min_eye),
        "FaceOcc1-B": otb_chips("OTB-FaceOcc1-B", detector, range(1, 301, STEP), min_eye),
    }
    impostor = {"Girl-A": otb_chips("OTB-Girl-A", detector, range(1, 301, STEP), 1.0),
                "WIDER>=40px": dict(enumerate(wider_chips(detector, 40, 1.0)))}
    threshold = cfg.identity.threshold
    rates, report = {}, []
    for kind, sets in (("TAR", genuine), ("FAR", impostor)):
        for name, chips in sets.items():
            assert len(chips) >= 20, f"{name}: only {len(chips)} faces found"
            matches = [snapshot.match(d, threshold) for d in embedder.embed(np.stack(list(chips.values())))]
            named = [m.name == "alice" for m in matches]
            dist = np.array([m.distance for m in matches])
            rates[name] = float(np.mean(named))
            report.append(f"{kind} {name}: {rates[name]:.3f} of {len(named)} faces "
                          f"(distance min {dist.min():.3f} median {np.median(dist):.3f} max {dist.max():.3f})")
    with capsys.disabled():
        print(f"\nthreshold {threshold}: " + "; ".join(report))
    assert rates["FaceOcc1-A"] >= 0.97 and rates["FaceOcc1-B"] >= 0.95
    assert rates["Girl-A"] == 0.0 and rates["WIDER>=40px"] == 0.0


def test_enrol_image_without_a_face_is_one_line_and_nothing_is_stored(tmp_path, caplog):
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    good = str(DATA / "OTB-FaceOcc1-A" / "img1" / "000001.jpg")
    gallery_path = tmp_path / "gallery.sqlite"
    for bad, words in ((blank, "no face found"), (tmp_path / "missing.jpg", "not a readable image")):
        caplog.clear()
        assert cli(["enroll", "alice", good, str(bad), "--gallery", str(gallery_path)]) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and words in errors[0] and "\n" not in errors[0], errors
    assert not gallery_path.exists()
