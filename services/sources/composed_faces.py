"""`faces://N`: N public-domain faces moving over a wall, rendered live, with exact boxes.

Why: the multi-face case (faces entering, crossing, hiding one another, leaving and coming
back) needs a source the project may ship and load-test with any number of faces, and the
research clips in shared/data may not be shipped. Every face is cut from NASA's portrait of
astronaut Eileen Collins (public domain, `skimage.data.astronaut()`), each one scaled,
mirrored and tinted differently, pasted with a soft elliptical edge on the CC0 brick wall of
the demo clip (`skimage.data.brick()`). Paths are closed curves with whole cycles per loop,
so the scene loops without a jump; some run past the frame edge (a face leaves and comes
back), and they cross (larger faces pass in front of smaller ones).

The boxes are exact: `FaceScene.boxes(i)` gives each face's box (forehead to chin, cheek to
cheek, as the demo clip's gt) and its visible fraction; `export` writes a MOTChallenge
sequence of the scene for `facetrack eval`.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from common.service import InputError
from services.sources.base import Source, SourceInfo

MAX_FACES = 8
SIZE = (640, 480)
FPS = 30.0
LOOP_S = 20.0
# The face on skimage.data.astronaut() (512x512), x, y, w, h: as services/demo/make_demo.py.
ASTRONAUT_FACE = (179.0, 82.0, 96.0, 104.0)
MARGIN = 0.55  # head and shoulders around the face box, in face widths each side: detectors need context

# One row per face: face width (px), mirrored, BGR tint, path centre (fraction of the frame),
# path radii (fraction), whole cycles per loop in x and y, phase (rad), size swing (fraction).
FACES = (
    (120, False, (1.00, 1.00, 1.00), (0.50, 0.50), (0.42, 0.20), (1, 2), 0.0, 0.15),
    (84, True, (0.85, 0.95, 1.15), (0.45, 0.40), (0.40, 0.28), (2, 1), 1.3, 0.20),
    (96, False, (1.15, 1.00, 0.85), (0.55, 0.55), (0.55, 0.30), (1, 1), 2.6, 0.10),
    (70, True, (0.95, 1.10, 0.95), (0.50, 0.45), (0.35, 0.35), (3, 2), 4.0, 0.15),
    (80, False, (0.80, 0.85, 0.95), (0.40, 0.55), (0.50, 0.25), (2, 3), 5.1, 0.20),
    (140, True, (1.05, 0.95, 1.10), (0.55, 0.45), (0.30, 0.45), (1, 2), 3.3, 0.10),
    (74, False, (1.10, 1.10, 1.00), (0.60, 0.40), (0.45, 0.30), (3, 1), 0.7, 0.25),
    (104, True, (0.90, 1.00, 0.90), (0.45, 0.50), (0.60, 0.20), (2, 2), 2.0, 0.10),
)


@dataclass(frozen=True)
class FaceBox:
    """A face's box in one frame: id (1-based), left, top, width, height (0-based pixels), visible fraction."""
    face_id: int
    box: tuple[float, float, float, float]
    visible: float


def _sprite() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """The astronaut's head and shoulders (BGR float), its soft elliptical alpha, the face box in it."""
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR).astype(np.float32)
    fx, fy, fw, fh = ASTRONAUT_FACE
    x0, y0 = int(max(0, fx - MARGIN * fw)), int(max(0, fy - MARGIN * fw))
    x1, y1 = int(min(image.shape[1], fx + fw + MARGIN * fw)), int(min(image.shape[0], fy + fh + 1.2 * MARGIN * fw))
    crop = image[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)  # opaque inside, fading over the outer quarter
    return crop, alpha, (fx - x0, fy - y0, fw, fh)


def _wall(size: tuple[int, int]) -> np.ndarray:
    """The demo clip's soft brick wall, tiled to `size`."""
    brick = np.rot90(skimage.data.brick())
    brick = cv2.cvtColor(np.ascontiguousarray(brick), cv2.COLOR_GRAY2BGR).astype(np.float32)
    brick = cv2.GaussianBlur(brick, (0, 0), 1.5)
    brick = ((brick - brick.mean()) * 0.8 + brick.mean()) * np.array([0.75, 0.85, 1.05], np.float32)
    brick = np.concatenate([brick, brick[:, ::-1]], axis=1)  # mirrored tiles: no seam
    brick = np.concatenate([brick, brick[::-1]], axis=0)
    reps = (math.ceil(size[1] / brick.shape[0]), math.ceil(size[0] / brick.shape[1]), 1)
    return np.clip(np.tile(brick, reps)[:size[1], :size[0]], 0, 255).astype(np.uint8)


class FaceScene:
    """The scene of `count` faces; frame i of a loop of LOOP_S seconds at FPS."""

    def __init__(self, count: int, size: tuple[int, int] = SIZE):
        if not 1 <= count <= MAX_FACES:
            raise ValueError(f"faces://{count}: between 1 and {MAX_FACES} faces")
        self.count, self.size = count, size
        self.frames = int(LOOP_S * FPS)
        self.wall = _wall(size)
        self._crop, self._alpha, self._face = _sprite()
        self._sprites = [self._tinted(i) for i in range(count)]

    def _tinted(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        _, mirrored, tint, *_ = FACES[i]
        crop, alpha = self._crop * np.asarray(tint, np.float32), self._alpha
        if mirrored:
            crop, alpha = crop[:, ::-1], alpha[:, ::-1]
        return np.clip(crop, 0, 255).astype(np.uint8), alpha

    def _place(self, i: int, k: int) -> tuple[float, float, float]:
        """Face i's centre x, y and width in frame k."""
        width, _, _, (cx, cy), (rx, ry), (nx, ny), phase, swing = FACES[i]
        u = 2 * math.pi * k / self.frames
        w, h = self.size
        x = (cx + rx * math.sin(nx * u + phase)) * w
        y = (cy + ry * math.sin(ny * u + 1.7 * phase)) * h
        return x, y, width * (1 + swing * math.sin(u + phase))

    def _face_box(self, i: int, k: int) -> tuple[float, float, float, float]:
        x, y, width = self._place(i, k)
        scale = width / self._face[2]
        return x - width / 2, y - self._face[3] * scale / 2, width, self._face[3] * scale

    def _depth_order(self, k: int) -> list[int]:
        """Faces back to front: the larger a face now, the nearer it is."""
        return sorted(range(self.count), key=lambda i: self._place(i, k)[2])

    def render(self, k: int) -> np.ndarray:
        frame = self.wall.copy()
        for i in self._depth_order(k):
            left, top, width, _ = self._face_box(i, k)
            scale = width / self._face[2]
            crop, alpha = self._sprites[i]
            sprite_w, sprite_h = max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale))
            x0, y0 = round(left - self._face[0] * scale), round(top - self._face[1] * scale)
            fx0, fy0 = max(0, x0), max(0, y0)
            fx1, fy1 = min(self.size[0], x0 + sprite_w), min(self.size[1], y0 + sprite_h)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            crop = cv2.resize(crop, (sprite_w, sprite_h), interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(alpha, (sprite_w, sprite_h), interpolation=cv2.INTER_AREA)
            region = frame[fy0:fy1, fx0:fx1]
            # cv2.blendLinear: region * (1 - a) + crop * a in one pass over uint8 pixels
            a = np.ascontiguousarray(alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0])
            part = np.ascontiguousarray(crop[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0])
            region[:] = cv2.blendLinear(part, np.ascontiguousarray(region), a, 1 - a)
        return frame

    def _sprite_ellipse(self, i: int, k: int) -> tuple[float, float, float, float]:
        """Centre and half-axes of face i's opaque part (alpha >= 0.5) in frame k: what hides a face behind it."""
        left, top, width, _ = self._face_box(i, k)
        scale = width / self._face[2]
        w, h = self._crop.shape[1] * scale, self._crop.shape[0] * scale
        x0, y0 = left - self._face[0] * scale, top - self._face[1] * scale
        return x0 + w / 2, y0 + h / 2, 0.875 * w / 2, 0.875 * h / 2

    def boxes(self, k: int) -> list[FaceBox]:
        """Every face at least partly in view in frame k, with the fraction of its box visible.

        Visible means inside the frame and not behind a nearer face's opaque ellipse: a
        coverage estimate on a 16 x 16 grid over the box, good to a few per cent.
        """
        order = self._depth_order(k)
        out = []
        for rank, i in enumerate(order):
            left, top, w, h = self._face_box(i, k)
            xs, ys = np.meshgrid(np.linspace(left, left + w, 16), np.linspace(top, top + h, 16))
            seen = (xs >= 0) & (xs < self.size[0]) & (ys >= 0) & (ys < self.size[1])
            for j in order[rank + 1:]:
                cx, cy, ax, ay = self._sprite_ellipse(j, k)
                seen &= ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 > 1
            visible = float(seen.mean())
            if visible > 0:
                out.append(FaceBox(i + 1, (left, top, w, h), round(visible, 3)))
        return sorted(out, key=lambda b: b.face_id)


def export(count: int, out: Path, frames: int | None = None) -> Path:
    """Write the scene as a MOTChallenge sequence (img1/, gt/gt.txt 1-based, seqinfo.ini)."""
    scene = FaceScene(count)
    frames = frames or scene.frames
    (out / "img1").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(exist_ok=True)
    rows = []
    for k in range(frames):
        cv2.imwrite(str(out / "img1" / f"{k + 1:06d}.jpg"), scene.render(k), [cv2.IMWRITE_JPEG_QUALITY, 90])
        rows += [f"{k + 1},{b.face_id},{b.box[0] + 1:.2f},{b.box[1] + 1:.2f},{b.box[2]:.2f},{b.box[3]:.2f},1,1,{b.visible}"
                 for b in scene.boxes(k)]
    (out / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    (out / "seqinfo.ini").write_text(
        f"[Sequence]\nname={out.name}\nimDir=img1\nframeRate={FPS:g}\nseqLength={frames}\n"
        f"imWidth={scene.size[0]}\nimHeight={scene.size[1]}\nimExt=.jpg\n")
    return out


class ComposedFacesSource(Source):
    """`faces://N`: the FaceScene of N faces, frame after frame; capture paces and loops it."""

    def __init__(self, count: str, name: str):
        self.name = name
        if not count.isdigit():
            raise InputError(f"capture source {name}: the number of faces {count!r} is not a number (faces://4)")
        self._count = int(count)
        self._scene: FaceScene | None = None
        self._pos = 0

    def open(self) -> SourceInfo:
        try:
            self._scene = self._scene or FaceScene(self._count)
        except ValueError as exc:
            raise InputError(f"capture source {self.name}: {exc}") from None
        self._pos = 0
        return SourceInfo(*self._scene.size, FPS, live=False)

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._scene is None or self._pos >= self._scene.frames:
            return None
        pos, self._pos = self._pos, self._pos + 1
        return self._scene.render(pos), pos

    def close(self) -> None:
        self._pos = 0

    def rewind(self) -> None:
        self._pos = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write the faces://N scene as a MOTChallenge sequence")
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--frames", type=int, help=f"default: one loop, {int(LOOP_S * FPS)}")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(export(args.faces, args.out, args.frames))


if __name__ == "__main__":
    main()
