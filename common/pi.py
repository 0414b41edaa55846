"""The Raspberry Pi branch of `make run`: is this a Pi, and which source does it capture from?

    python3 -m common.pi model     # prints "Raspberry Pi 5 Model B Rev 1.0", or nothing elsewhere
    .venv/bin/python -m common.pi source   # prints "capture.source=picamera2://0" or nothing;
                                           # one line on stderr says which source and why

`model` runs before the venv exists (the Makefile decides the venv's flags from it), so this
module needs only the standard library until `source` loads the config. A Pi is recognised by
its device-tree model (`/proc/device-tree/model`, the same file as
`/sys/firmware/devicetree/base/model`); $FACETRACK_BOARD_ROOT moves the root for tests.

The source rule: a config (FACETRACK_CONFIG's file, FACETRACK_SET, or an edited default)
that names a source keeps it; otherwise a Pi with a camera attached (picamera2 lists it)
captures from `picamera2://0`, and without one the shipped default stays.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

MODEL_FILES = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
CAMERA_SOURCE = "picamera2://0"


def board_root() -> Path:
    return Path(os.environ.get("FACETRACK_BOARD_ROOT") or "/")


def pi_model(root: str | os.PathLike | None = None) -> str:
    """The board's model string if it is a Raspberry Pi, else ""."""
    base = Path(root) if root is not None else board_root()
    for rel in MODEL_FILES:
        try:
            model = (base / rel).read_bytes().rstrip(b"\0\n").decode("ascii", "replace").strip()
        except OSError:
            continue
        return model if model.startswith("Raspberry Pi") else ""
    return ""


def cameras() -> tuple[list[str], str]:
    """(models of the attached cameras, why none could be listed) via picamera2's camera list."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        return [], f"picamera2 is not importable ({exc})"
    try:
        infos = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera's own errors (no pipeline handler, no permission) are not ours
        return [], f"picamera2 could not list cameras ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return [str(info.get("Model", "camera")) for info in infos], ""


def named_source() -> bool:
    """Whether the config the stack will load names a capture source (not just the shipped default)."""
    import yaml

    from common.config import DEFAULT_CONFIG, CaptureConfig

    overrides = [s for s in os.environ.get("FACETRACK_SET", "").split(",") if s.strip()]
    if any(s.split("=", 1)[0].strip() == "capture.source" for s in overrides):
        return True
    path = Path(os.environ.get("FACETRACK_CONFIG") or DEFAULT_CONFIG)
    data = yaml.safe_load(path.read_text()) or {}
    capture = data.get("capture") if isinstance(data, dict) else None
    source = capture.get("source") if isinstance(capture, dict) else None
    if path.resolve() != DEFAULT_CONFIG.resolve():
        return source is not None
    return source is not None and source != CaptureConfig().source  # an edited default.yaml names its own


def choose_source(model: str) -> tuple[str, str]:
    """(the override for FACETRACK_SET or "", the one line saying which source and why)."""
    from common.config import ConfigError, load_config

    try:
        source = load_config().capture.source
    except ConfigError as exc:
        return "", f"facetrack: source not chosen: {exc}"
    if named_source():
        return "", f"facetrack: source {source}: the config names it ({model})"
    found, why = cameras()
    if not found:
        return "", f"facetrack: source {source}: no camera found on this {model} ({why or 'picamera2 lists none'})"
    return (f"capture.source={CAMERA_SOURCE}",
            f"facetrack: source {CAMERA_SOURCE}: {model} with camera {found[0]} attached and no source in the config")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["model"]:
        model = pi_model()
        if model:
            print(model)
        return 0
    if args == ["source"]:
        model = pi_model()
        if not model:
            return 0
        override, line = choose_source(model)
        print(line, file=sys.stderr)
        if override:
            print(override)
        return 0
    print("usage: python -m common.pi model|source", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
