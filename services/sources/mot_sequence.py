"""A MOTChallenge sequence folder (img1/*.jpg + seqinfo.ini), read from disk in order.

Integration tests run the pipeline on these and score against gt/gt.txt: position p is
the image `img1/` sorted p-th, i.e. gt frame p + 1.
"""
from __future__ import annotations

import configparser
from pathlib import Path

import cv2
import numpy as np

from common.service import InputError
from services.sources.base import Source, SourceInfo


class MotSequenceSource(Source):
    """Images of `<dir>/<imDir>/*<imExt>` in name order at seqinfo.ini's frameRate."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or str(path)
        self._files: list[Path] = []
        self._pos = 0

    def _seqinfo(self) -> configparser.SectionProxy | dict:
        ini = self.path / "seqinfo.ini"
        if not ini.is_file():
            return {}
        parser = configparser.ConfigParser()
        try:
            parser.read(ini)
        except configparser.Error as exc:
            raise InputError(f"capture source {self.name}: bad seqinfo.ini ({str(exc).splitlines()[0]})") from None
        return parser["Sequence"] if parser.has_section("Sequence") else {}

    def open(self) -> SourceInfo:
        if not self.path.is_dir():
            raise InputError(f"capture source {self.name}: no such directory")
        info = self._seqinfo()
        im_dir = self.path / info.get("imDir", "img1")
        if not im_dir.is_dir():
            raise InputError(f"capture source {self.name}: not a video file or MOTChallenge sequence (no {im_dir.name}/ folder)")
        ext = info.get("imExt", ".jpg")
        self._files = sorted(im_dir.glob(f"*{ext}"))
        if not self._files:
            raise InputError(f"capture source {self.name}: no *{ext} images in {im_dir}")
        first = self._load(self._files[0])
        try:
            fps = float(info.get("frameRate", 0))
        except ValueError:
            raise InputError(f"capture source {self.name}: seqinfo.ini frameRate is not a number") from None
        self._pos = 0
        return SourceInfo(first.shape[1], first.shape[0], fps, live=False)

    def _load(self, path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"capture source {self.name}: cannot decode {path.name}")
        return image

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._pos >= len(self._files):
            return None
        self._pos += 1
        return self._load(self._files[self._pos - 1]), self._pos - 1

    def close(self) -> None:
        self._files = []
