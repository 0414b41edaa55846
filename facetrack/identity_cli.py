"""`facetrack enroll NAME IMAGE...` and `facetrack gallery list|remove NAME`: the face gallery.

Enrolment runs the real detector (the configured BlazeFace build) on each image, aligns the
one face it finds by its eyes and embeds it with the identity service's descriptor model,
then stores every descriptor under NAME in the gallery file (`identity.gallery`, or
--gallery). It is all or nothing: an unreadable image, an image with no face, more than one
face, or a face too small stops it with one line and exit code 1 before anything is stored.
A running identity service picks the change up by itself.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from common.config import ROOT, Config, ConfigError, load_config
from common.gallery import Gallery, GalleryError

log = logging.getLogger("facetrack.identity")

EXIT_INPUT, EXIT_USAGE = 1, 2


class EnrolError(Exception):
    """Why an enrolment cannot go ahead, worded as one line."""


def _model_dir(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else ROOT / path


def load_models(cfg: Config):
    """The configured detector and descriptor model; a missing build is an EnrolError."""
    from models.facerec.runtime import EmbedderError, load_embedder
    from models.runtime import ModelFileError, load_detector

    try:
        detector = load_detector(variant=cfg.detector.variant, backend=cfg.detector.backend,
                                 model_dir=_model_dir(cfg.detector.model_dir),
                                 score_threshold=cfg.detector.score_threshold, nms_iou=cfg.detector.nms_iou,
                                 num_threads=cfg.detector.threads, input_size=cfg.detector.input_size)
        embedder = load_embedder(cfg.identity.backend, _model_dir(cfg.identity.model_dir), cfg.identity.threads)
    except (ModelFileError, EmbedderError) as e:
        raise EnrolError(str(e)) from None
    return detector, embedder


def face_chip(image_path: Path, detector, min_eye_px: float) -> np.ndarray:
    """The aligned chip of the single face in an image."""
    from models.facerec.align import align
    from models.facerec.quality import eye_distance

    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise EnrolError(f"{image_path}: not a readable image")
    found = detector.detect(image)
    faces = len(found.scores)
    if faces == 0:
        raise EnrolError(f"{image_path}: no face found")
    if faces > 1:
        raise EnrolError(f"{image_path}: {faces} faces found; give images with exactly one face")
    keypoints = np.asarray(found.keypoints[0], np.float32)
    eyes = eye_distance(keypoints)
    if eyes < min_eye_px:
        raise EnrolError(f"{image_path}: the face is too small (eyes {eyes:.0f} px apart, "
                         f"identity.min_eye_px is {min_eye_px:g})")
    return align(image, keypoints)


def enroll(cfg: Config, name: str, images: list[Path], gallery_path: Path, replace: bool, detector, embedder) -> dict:
    chips = np.stack([face_chip(p, detector, cfg.identity.min_eye_px) for p in images])
    descriptors = embedder.embed(chips)
    spread = max((float(np.linalg.norm(a - b)) for i, a in enumerate(descriptors) for b in descriptors[i + 1:]),
                 default=0.0)
    if spread > cfg.identity.threshold:
        log.warning("the images of %s differ by up to %.3f (threshold %.3f): are they all the same person?",
                    name, spread, cfg.identity.threshold)
    with Gallery(gallery_path, create=True) as gallery:
        removed = gallery.remove(name) if replace else 0
        total = gallery.add(name, descriptors, [str(p) for p in images])
    return {"name": name, "added": len(images), "replaced": removed, "faces": total, "spread": round(spread, 4),
            "gallery": str(gallery_path)}


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="stack config (default: $FACETRACK_CONFIG or configs/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--gallery", type=Path, help="gallery file (default: identity.gallery of the config)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facetrack", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("enroll", help="enrol a person from photos of their face")
    e.add_argument("name")
    e.add_argument("images", nargs="+", type=Path)
    e.add_argument("--replace", action="store_true", help="drop the person's earlier faces first")
    _common_args(e)
    g = sub.add_parser("gallery", help="list or remove enrolled people")
    gsub = g.add_subparsers(dest="action", required=True)
    ls = gsub.add_parser("list")
    ls.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    _common_args(ls)
    rm = gsub.add_parser("remove")
    rm.add_argument("name")
    _common_args(rm)
    return p


def _gallery_list(path: Path, as_json: bool) -> int:
    with Gallery(path) as gallery:
        entries = gallery.entries()
    if as_json:
        print(json.dumps({"gallery": str(path), "people": [e.__dict__ for e in entries]}))
    else:
        for e in entries:
            print(f"{e.name}\t{e.faces} face(s)")
    return 0


def _gallery_remove(path: Path, name: str) -> int:
    with Gallery(path) as gallery:
        removed = gallery.remove(name)
    if not removed:
        log.error("gallery %s: nobody called %r", path, name)
        return EXIT_INPUT
    print(f"removed {name}: {removed} face(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`enroll ...` or `gallery list|remove ...` (the first word picks the command)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    args = parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_USAGE
    path = args.gallery or Path(cfg.identity.gallery)
    try:
        if args.command == "gallery":
            return _gallery_list(path, args.json) if args.action == "list" else _gallery_remove(path, args.name)
        detector, embedder = load_models(cfg)
        print(json.dumps(enroll(cfg, args.name, args.images, path, args.replace, detector, embedder)))
    except (EnrolError, GalleryError) as e:
        log.error("%s", e)
        return EXIT_INPUT
    return 0


def enroll_main(argv: list[str]) -> int:
    """Entry point of `facetrack enroll` (facetrack/cli.py passes the words after it)."""
    return main(["enroll", *argv])


def gallery_main(argv: list[str]) -> int:
    """Entry point of `facetrack gallery`."""
    return main(["gallery", *argv])


if __name__ == "__main__":
    sys.exit(main())
