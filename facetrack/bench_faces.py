"""A composed clip with N faces for `facetrack bench pipeline --faces N`.

N copies of the public-domain astronaut portrait (`skimage.data.astronaut()`, the demo's
face; see services/demo/README.md), 80-110 px wide, each moving on its own smooth loop in
its cell of a 4 x 2 grid over a brick wall (`skimage.data.brick()`, CC0), so that the
detector finds all of them (this measures cost per face, not accuracy); written as a
MOTChallenge folder (img1/, seqinfo.ini, gt/gt.txt) that the capture plays at 30 fps.
Deterministic per N.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from services.demo.make_demo import ASTRONAUT_FACE

SIZE = (640, 480)
FRAMES = 150  # 5 s; the capture loops it


def _face() -> np.ndarray:
    import skimage.data  # imported here: only the bench needs it

    x, y, w, h = ASTRONAUT_FACE
    portrait = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    pad = 0.25  # some hair and neck around the face box, as a detector sees a face
    return portrait[int(y - pad * h):int(y + (1 + pad) * h), int(x - pad * w):int(x + (1 + pad) * w)]


def _wall() -> np.ndarray:
    import skimage.data

    brick = cv2.cvtColor(np.ascontiguousarray(np.rot90(skimage.data.brick())), cv2.COLOR_GRAY2BGR)
    reps = (math.ceil(SIZE[1] / brick.shape[0]), math.ceil(SIZE[0] / brick.shape[1]), 1)
    return np.tile(brick, reps)[:SIZE[1], :SIZE[0]]


def compose(n: int, out: Path) -> Path:
    """Write the N-face clip into `out`; returns it."""
    rng = np.random.default_rng(n)
    face, wall = _face(), _wall()
    (out / "img1").mkdir(parents=True, exist_ok=True)
    if not 1 <= n <= 8:
        raise ValueError(f"1 to 8 faces, not {n}")
    widths = rng.uniform(80, 110, n)
    phases = rng.uniform(0, 2 * math.pi, (n, 2))
    cell_w, cell_h = SIZE[0] // 4, SIZE[1] // 2
    gt = []
    for f in range(FRAMES):
        image = wall.copy()
        t = 2 * math.pi * f / FRAMES
        for i in range(n):
            crop = cv2.resize(face, (int(widths[i]), int(widths[i] * face.shape[0] / face.shape[1])))
            ch, cw = crop.shape[:2]
            x = int((i % 4) * cell_w + (cell_w - cw) / 2 + 0.45 * (cell_w - cw) * math.sin(t + phases[i, 0]))
            y = int((i // 4) * cell_h + (cell_h - ch) / 2 + 0.4 * (cell_h - ch) * math.sin(2 * t + phases[i, 1]))
            image[y:y + ch, x:x + cw] = crop
            gt.append(f"{f + 1},{i + 1},{x + 1},{y + 1},{cw},{ch},1,1,1")
        cv2.imwrite(str(out / "img1" / f"{f + 1:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (out / "gt").mkdir(exist_ok=True)
    (out / "gt" / "gt.txt").write_text("\n".join(gt) + "\n")
    (out / "seqinfo.ini").write_text(f"[Sequence]\nname=faces-{n}\nimDir=img1\nframeRate=30\nseqLength={FRAMES}\n"
                                     f"imWidth={SIZE[0]}\nimHeight={SIZE[1]}\nimExt=.jpg\n")
    return out
