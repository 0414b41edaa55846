"""Fetch face-api's face recognition weights at set-up time, verified by sha256.

The weights (dlib's ResNet face descriptor, converted to TensorFlow.js and uint8-quantised)
ship in the npm package `@vladmandic/face-api` (MIT). `npm pack` fetches the pinned tarball
into models/weights/ (without npm, as on a Raspberry Pi, the same tarball comes straight from
the npm registry over HTTPS); only the files named in FILES are extracted, each checked against its
own sha256. Nothing here runs when a face is embedded.

Offline: set FACETRACK_FACEAPI_TARBALL to a local copy of the tarball.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from models.weights import sha256

log = logging.getLogger("facetrack.models.facerec.weights")

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
PACKAGE = "@vladmandic/face-api@1.7.15"
TARBALL = "vladmandic-face-api-1.7.15.tgz"
TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
DEST_NAME = "face-api-1.7.15"
# path inside the tarball -> sha256: the weights of the face descriptor. The JS file and licence are kept for the
# reference checks (tests run face-api's own networks in Node) and for the attribution.
FILES = {
    "package/model/face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
    "package/model/face_recognition_model-weights_manifest.json":
        "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
    "package/dist/face-api.node-wasm.js": "4cc67548193dfd0542da43d722f1cdcd015b7e867083e8f7627d3b36e52b47ce",
    "package/LICENSE": "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
}
MANIFEST = "face_recognition_model-weights_manifest.json"
ENV_TARBALL = "FACETRACK_FACEAPI_TARBALL"


class WeightsError(RuntimeError):
    """The face recognition weights are missing or do not match their checksum."""




def _dest_path(member: str, dest: Path) -> Path:
    return dest / DEST_NAME / member.removeprefix("package/")


def package_dir(weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The verified extraction (model/, dist/, LICENSE); raises WeightsError if absent or altered."""
    for member, digest in FILES.items():
        path = _dest_path(member, weights_dir)
        if not path.is_file():
            raise WeightsError(f"{path} is missing: run `python -m models.facerec.weights` (set-up step)")
        if sha256(path) != digest:
            raise WeightsError(f"{path} has the wrong sha256: delete it and run `python -m models.facerec.weights`")
    return weights_dir / DEST_NAME


def manifest_path(weights_dir: Path = WEIGHTS_DIR) -> Path:
    return package_dir(weights_dir) / "model" / MANIFEST


TARBALL_URL = "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz"


def _npm_pack(dest: Path) -> Path:
    if shutil.which("npm") is None:
        import urllib.request

        log.info("no npm here: fetching %s", TARBALL_URL)
        with urllib.request.urlopen(TARBALL_URL, timeout=120) as r, open(dest / TARBALL, "wb") as out:
            shutil.copyfileobj(r, out)
        return dest / TARBALL
    log.info("npm pack %s", PACKAGE)
    subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(dest), "--silent"], check=True,
                   stdout=subprocess.DEVNULL)
    return dest / TARBALL


def _extract(tarball: Path, dest: Path) -> None:
    if sha256(tarball) != TARBALL_SHA256:
        raise WeightsError(f"{tarball} has the wrong sha256 (expected {PACKAGE}, {TARBALL_SHA256})")
    with tarfile.open(tarball, "r:gz") as tf:
        for member in FILES:
            out = _dest_path(member, dest)
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:
                raise WeightsError(f"{tarball}: {member} is not a regular file")
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)


def fetch(dest: Path = WEIGHTS_DIR, tarball: str | None = None) -> Path:
    """Make sure the verified files are under dest/face-api-<version>/; return that directory."""
    try:
        return package_dir(dest)
    except WeightsError:
        pass
    dest.mkdir(parents=True, exist_ok=True)
    tarball = tarball or os.environ.get(ENV_TARBALL)
    if tarball:
        _extract(Path(tarball), dest)
    elif (dest / TARBALL).is_file() and sha256(dest / TARBALL) == TARBALL_SHA256:
        _extract(dest / TARBALL, dest)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            packed = _npm_pack(Path(tmp))
            _extract(packed, dest)
            shutil.copyfile(packed, dest / TARBALL)
    path = package_dir(dest)
    log.info("face-api weights ready in %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.facerec.weights", description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--tarball", help=f"local {TARBALL} (offline; default ${ENV_TARBALL})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        fetch(args.dest, args.tarball)
    except (WeightsError, OSError, subprocess.CalledProcessError, tarfile.TarError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
