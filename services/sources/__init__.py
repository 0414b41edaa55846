"""Capture sources, chosen by one URI in `capture.source`.

    demo://                         the bundled clip (services/demo/demo.mp4)
    faces://N                       N public-domain faces moving, crossing, leaving (1-8, rendered live)
    file:///path/clip.mp4, or a path to a video file
    /path/to/seq                    a MOTChallenge sequence folder (img1/ + seqinfo.ini)
    rtsp://..., http(s)://...       a network stream (reconnects when it drops)
    v4l2:///dev/video0, /dev/video0 a V4L2 device
    picamera2://0                   the Pi camera number 0 through picamera2
"""
from __future__ import annotations

import threading
import urllib.parse
from pathlib import Path

from common.config import CaptureConfig
from common.service import InputError
from services.sources.base import Source, SourceInfo, fit, target_size
from services.sources.composed_faces import ComposedFacesSource
from services.sources.mot_sequence import MotSequenceSource
from services.sources.network import NetworkStreamSource
from services.sources.picam import PiCameraSource
from services.sources.v4l2 import V4L2Source
from services.sources.video_file import VideoFileSource

__all__ = ["Source", "SourceInfo", "open_source", "fit", "target_size", "DEMO_CLIP"]

DEMO_CLIP = Path(__file__).resolve().parent.parent / "demo" / "demo.mp4"
SCHEMES = ("demo", "faces", "file", "rtsp", "rtsps", "http", "https", "v4l2", "picamera2")


def _path_source(path: str, name: str) -> Source:
    """A folder is a MOT sequence, anything else a video file (each says if it does not exist)."""
    return MotSequenceSource(path, name) if Path(path).is_dir() else VideoFileSource(path, name)


def open_source(capture: CaptureConfig, stop: threading.Event) -> Source:
    """The Source for `capture.source` (not opened yet). `stop` ends a stream's reconnect waits."""
    uri = capture.source.strip()
    if "://" not in uri:
        return V4L2Source(uri, capture) if uri.startswith("/dev/video") else _path_source(uri, uri)
    scheme = uri.split("://", 1)[0].lower()
    parts = urllib.parse.urlsplit(uri)
    if scheme == "demo":
        return VideoFileSource(DEMO_CLIP, uri)
    if scheme == "faces":
        return ComposedFacesSource(parts.netloc, uri)
    if scheme == "file":
        return _path_source(urllib.parse.unquote(parts.path), uri)
    if scheme in ("rtsp", "rtsps", "http", "https"):
        return NetworkStreamSource(uri, stop, capture)
    if scheme == "v4l2":
        return V4L2Source(parts.path, capture, uri)
    if scheme == "picamera2":
        number = parts.netloc or "0"
        if not number.isdigit():
            raise InputError(f"capture source {uri}: camera number {number!r} is not a number (picamera2://0)")
        return PiCameraSource(int(number), capture, uri)
    raise InputError(f"capture source {uri}: unknown scheme {scheme}:// (known: {', '.join(SCHEMES)})")
