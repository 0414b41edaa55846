"""Render the bundled demo clip: a virtual camera moving over public-domain photos.

Why synthetic: the project may only ship a face video it has the right to redistribute.
NASA's portrait of astronaut Eileen Collins (public domain, shipped in scikit-image's data)
hangs twice on a CC0 brick wall (once mirrored at about half size, as a second face), next
to a CC0 photo without a face. A camera path (pan, zoom, slight roll, hand shake, a slow
exposure drift) makes the faces move, change scale, leave and re-enter the view, and the
clip ends where it starts so `demo://` loops without a jump.

Because the camera is known exactly, so are the faces: `gt.txt` (MOTChallenge layout,
next to the clip) holds each face's box in every frame where any of it is visible.

    .venv/bin/pip install imageio-ffmpeg              # its ffmpeg has libx264; OpenCV's has no H.264 encoder
    .venv/bin/python -m services.demo.make_demo      # rewrites demo.mp4 and gt/gt.txt

H.264 (libx264, CRF 26) keeps the clip near 1 MB where OpenCV's own mp4v writer needs 4+ MB;
OpenCV's bundled FFmpeg decodes it (tests/test_capture_sources.py reads it back).
"""
from __future__ import annotations

import argparse
import logging
import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import skimage.data

log = logging.getLogger("make_demo")

HERE = Path(__file__).resolve().parent
SIZE = (640, 480)
FPS = 30
SECONDS = 15.0
WORLD = (1700, 1000)

# The face on skimage.data.astronaut() (512x512), x, y, w, h in pixels: forehead to chin,
# cheek to cheek, the extent a face detector boxes. Checked by eye on an enlarged crop.
ASTRONAUT_FACE = (179.0, 82.0, 96.0, 104.0)

# Posters on the wall: (image, top-left in the world, scale, mirrored, face id or None).
POSTERS = (
    ("astronaut", (190, 140), 1.0, False, 1),
    ("astronaut", (1180, 230), 0.55, True, 2),
    ("coffee", (820, 610), 0.5, False, None),
)

# Camera keyframes: time (s), centre in the world (x, y), zoom (image px per world px), roll (deg).
KEYS = (
    (0.0, (470, 380), 0.95, 0.0),
    (3.0, (430, 300), 2.3, 4.0),
    (5.0, (640, 330), 1.7, -3.0),
    (8.0, (1300, 380), 1.45, 2.0),
    (10.5, (850, 490), 0.5, 0.0),
    (12.5, (520, 320), 1.25, 7.0),
    (15.0, (470, 380), 0.95, 0.0),
)


def _rgb2bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def build_world() -> tuple[np.ndarray, dict[int, tuple[float, float, float, float]]]:
    """The wall with its posters, and each face's box (x, y, w, h) in world pixels."""
    brick = np.rot90(skimage.data.brick())  # skimage stores the wall with vertical courses
    brick = cv2.cvtColor(np.ascontiguousarray(brick), cv2.COLOR_GRAY2BGR).astype(np.float32)
    # A soft, low-contrast wall: fine texture would cost most of the clip's bytes.
    brick = cv2.GaussianBlur(brick, (0, 0), 1.5)
    brick = (brick - brick.mean()) * 0.8 + brick.mean()
    brick = brick * np.array([0.75, 0.85, 1.05], np.float32)
    reps = (math.ceil(WORLD[1] / brick.shape[0]), math.ceil(WORLD[0] / brick.shape[1]), 1)
    world = np.clip(np.tile(brick, reps)[:WORLD[1], :WORLD[0]], 0, 255).astype(np.uint8)
    images = {"astronaut": _rgb2bgr(skimage.data.astronaut()), "coffee": _rgb2bgr(skimage.data.coffee())}
    faces = {}
    for name, (x0, y0), scale, mirrored, face_id in POSTERS:
        img = images[name][:, ::-1] if mirrored else images[name]
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        cv2.rectangle(world, (x0 - 8, y0 - 8), (x0 + w + 7, y0 + h + 7), (235, 235, 235), -1)  # frame
        world[y0:y0 + h, x0:x0 + w] = img
        if face_id is not None:
            fx, fy, fw, fh = ASTRONAUT_FACE
            if mirrored:
                fx = images[name].shape[1] - fx - fw
            faces[face_id] = (x0 + fx * scale, y0 + fy * scale, fw * scale, fh * scale)
    return world, faces


def _smooth(a: float, b: float, u: float) -> float:
    """Ease in and out between a and b, so the camera never jerks at a keyframe."""
    u = u * u * (3 - 2 * u)
    return a + (b - a) * u


def camera(t: float) -> tuple[float, float, float, float]:
    """Camera centre x, y, zoom and roll at time t, with a small hand shake."""
    for (t0, c0, z0, r0), (t1, c1, z1, r1) in zip(KEYS, KEYS[1:]):
        if t0 <= t <= t1:
            u = (t - t0) / (t1 - t0)
            break
    cx, cy = _smooth(c0[0], c1[0], u), _smooth(c0[1], c1[1], u)
    zoom = math.exp(_smooth(math.log(z0), math.log(z1), u))  # zoom changes evenly in scale
    roll = _smooth(r0, r1, u)
    # Whole cycles per clip (18 and 13), so the shake too joins up when the clip loops.
    cx += 2.0 * math.sin(2 * math.pi * 18 * t / SECONDS) / zoom
    cy += 1.5 * math.sin(2 * math.pi * 13 * t / SECONDS + 1.0) / zoom
    return cx, cy, zoom, roll


def view_matrix(cx: float, cy: float, zoom: float, roll: float) -> np.ndarray:
    """2x3 affine map from world to image pixels (camera centre to image centre)."""
    m = cv2.getRotationMatrix2D((cx, cy), roll, zoom)
    m[:, 2] += (SIZE[0] / 2 - cx, SIZE[1] / 2 - cy)
    return m


def face_in_view(box, m: np.ndarray, zoom: float) -> tuple[tuple[float, float, float, float], float]:
    """A face box seen by the camera (centre mapped, size scaled by zoom) and its visible fraction."""
    x, y, w, h = box
    cx, cy = m @ np.array([x + w / 2, y + h / 2, 1.0])
    w, h = w * zoom, h * zoom
    left, top = cx - w / 2, cy - h / 2
    vis_w = max(0.0, min(left + w, SIZE[0]) - max(left, 0.0))
    vis_h = max(0.0, min(top + h, SIZE[1]) - max(top, 0.0))
    return (left, top, w, h), vis_w * vis_h / (w * h)


def open_encoder(clip: Path) -> subprocess.Popen:
    """An ffmpeg process that encodes raw BGR frames from its stdin to H.264 in `clip`."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SystemExit("make_demo needs imageio-ffmpeg for its libx264: .venv/bin/pip install imageio-ffmpeg") from None
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{SIZE[0]}x{SIZE[1]}", "-r", str(FPS), "-i", "-",
           "-c:v", "libx264", "-preset", "slow", "-crf", "26", "-g", str(FPS), "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", str(clip)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE)


def render(out_dir: Path) -> None:
    world, faces = build_world()
    clip = out_dir / "demo.mp4"
    encoder = open_encoder(clip)
    assert encoder.stdin is not None  # opened with stdin=PIPE
    rows = []
    n = int(SECONDS * FPS)
    for i in range(n):
        t = i / FPS
        cx, cy, zoom, roll = camera(t)
        m = view_matrix(cx, cy, zoom, roll)
        frame = cv2.warpAffine(world, m, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + 0.08 * math.sin(2 * math.pi * t / SECONDS)
        encoder.stdin.write(cv2.convertScaleAbs(frame, alpha=gain).tobytes())
        for face_id, box in sorted(faces.items()):
            (left, top, w, h), visible = face_in_view(box, m, zoom)
            if visible > 0:
                # MOT boxes are 1-based (MATLAB style), like the sequences in shared/data.
                rows.append(f"{i + 1},{face_id},{left + 1:.2f},{top + 1:.2f},{w:.2f},{h:.2f},1,1,{visible:.3f}")
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise SystemExit(f"ffmpeg failed to encode {clip}")
    (out_dir / "gt").mkdir(exist_ok=True)
    (out_dir / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    log.info("wrote %s (%d frames, %.2f MB) and %d gt rows", clip, n, clip.stat().st_size / 2**20, len(rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for demo.mp4 and gt/gt.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    render(args.out)


if __name__ == "__main__":
    main()
