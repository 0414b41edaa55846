"""What every capture source is: open() -> SourceInfo, read() -> (BGR image, position) | None, close().

The capture service knows nothing else about a source; adding a kind of source means one
small module with one `Source` subclass and one line in `services/sources/__init__.py`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SourceInfo:
    """What capture needs to know before the first frame."""
    width: int
    height: int
    fps: float  # the source's own rate; 0 when it does not say
    live: bool  # True: the device sets the pace (camera, stream); False: capture paces it (files)


class Source(abc.ABC):
    """One source of BGR uint8 frames. `name` is the URI as configured, used in every message."""

    name: str

    @abc.abstractmethod
    def open(self) -> SourceInfo:
        """Open the source; raise InputError (one line naming the source and cause) if it cannot."""

    @abc.abstractmethod
    def read(self) -> tuple[np.ndarray, int] | None:
        """The next frame and its position in the source, or None at the end.

        The image may be reused by the next read(): copy it (into the ring) before reading again.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the source; safe to call twice."""

    def lores(self) -> np.ndarray | None:
        """A small BGR copy of the frame read last, scaled by the camera's ISP (the Pi camera's `lores`
        stream), for the detector; None when the source has none."""
        return None

    def rewind(self) -> None:
        """Start again from the first frame (files loop this way); reopening is the portable way."""
        self.close()
        self.open()


def one_line(exc: BaseException) -> str:
    """An exception as the one line an error message may quote (library messages can span lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def target_size(src_w: int, src_h: int, want_w: int, want_h: int) -> tuple[int, int]:
    """Output size for a source of src_w x src_h when capture.width/height ask for want_w x want_h.

    0 keeps the source's own size; with only one of the two set, the other follows the
    source's aspect ratio (rounded to an even number, which video encoders downstream like).
    """
    if want_w and want_h:
        return want_w, want_h
    if want_w:
        return want_w, max(2, round(src_h * want_w / src_w / 2) * 2)
    if want_h:
        return max(2, round(src_w * want_h / src_h / 2) * 2), want_h
    return src_w, src_h


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` resized to width x height (unchanged when it already has that size)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    shrink = width * height < w * h
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
