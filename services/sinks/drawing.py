"""Draws tracks on a frame: a box and an "id N [name]" label per track, one colour per id.

Colours come from the id alone (golden-ratio hue steps, full saturation), so a face keeps
its colour across frames, in the page's table and in every viewer.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from common.messages import Track

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
THICKNESS = {"confirmed": 3}  # other states (lost) are drawn thin
THIN = 1


def track_colour(track_id: int) -> tuple[int, int, int]:
    """BGR colour of a track id."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 1.0, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def colour_hex(track_id: int) -> str:
    b, g, r = track_colour(track_id)
    return f"#{r:02x}{g:02x}{b:02x}"


def box_pixels(box, width: int, height: int) -> tuple[int, int, int, int]:
    """[x1, y1, x2, y2] floats to integer pixel corners inside the image."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return (min(max(x1, 0), width - 1), min(max(y1, 0), height - 1),
            min(max(x2, 0), width - 1), min(max(y2, 0), height - 1))


def label_of(track: Track, name: str | None = None) -> str:
    """ "id 3", "id 3 Ada", "id 3 (lost)": an unknown face gets no name."""
    label = f"id {track.id}"
    if name and name != "unknown":
        label += f" {name}"
    return label if track.state == "confirmed" else f"{label} ({track.state})"


def draw_tracks(image: np.ndarray, tracks: list[Track], names: dict[int, str] | None = None) -> np.ndarray:
    """Draw in place on `image` (BGR) and return it; `names` by track id, from the identity service."""
    h, w = image.shape[:2]
    for track in tracks:
        colour = track_colour(track.id)
        x1, y1, x2, y2 = box_pixels(track.box, w, h)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, THICKNESS.get(track.state, THIN), cv2.LINE_8)
        label = label_of(track, (names or {}).get(track.id))
        (tw, th), base = cv2.getTextSize(label, _FONT, _FONT_SCALE, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
        cv2.rectangle(image, (x1, ty - th - 2), (x1 + tw + 4, ty + base), colour, cv2.FILLED)
        cv2.putText(image, label, (x1 + 2, ty), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return image
