"""`facetrack bench lores`: what the camera's lores stream saves the detector, one JSON object.

The detector's work before inference (read the frame out of the ring, letterbox it to the
model's input) for main frames of several sizes against the ISP's 320x240 lores copy (plus
capture's YUV420 -> BGR conversion of it). Inference itself is the same either way (the model
input does not change), so it is left out. Real frames (an OTB face sequence), interleaved
rounds, medians; speed of this machine only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import cv2
import numpy as np

from common.frame_ring import FrameRing
from models.dataset import DATA_DIR
from models.zoo import MODELS

SIZES = {"main 640x480": (640, 480), "main 1280x720": (1280, 720), "main 1920x1080": (1920, 1080),
         "lores 320x240": (320, 240)}


def bench(frames: int, rounds: int, variant: str) -> dict:
    files = sorted((DATA_DIR / "OTB-FaceOcc1-A" / "img1").glob("*.jpg"))[:frames]
    scene = [cv2.imread(str(f)) for f in files]
    model = MODELS[variant]
    input_size = model.input_size
    prep: dict[str, list[float]] = {k: [] for k in SIZES}
    convert: list[float] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        rings = {k: FrameRing.create(f"bench-lores-{os.getpid()}-{i}", w, h, 4, shm_dir=shm)
                 for i, (k, (w, h)) in enumerate(SIZES.items())}
        try:
            for _ in range(rounds):
                for key, (w, h) in SIZES.items():
                    for i, image in enumerate(scene):
                        frame = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
                        if key.startswith("lores"):  # what the ISP hands over, and capture's conversion
                            yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
                            t0 = time.perf_counter()
                            frame = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
                            convert.append((time.perf_counter() - t0) * 1000)
                        slot, seq = rings[key].write(i, 0.0, frame)
                        t0 = time.perf_counter()
                        pixels = rings[key].read(slot, seq)
                        assert pixels is not None, "nothing else writes this ring"
                        model.preprocess(pixels)  # the model's own: letterbox or scale-and-pad
                        prep[key].append((time.perf_counter() - t0) * 1000)
        finally:
            for ring in rings.values():
                ring.close()
    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "variant": variant,
            "model_input": input_size, "frames": len(scene) * rounds,
            "read_and_preprocess_ms_p50": {k: round(float(np.median(v)), 3) for k, v in prep.items()},
            "capture_lores_yuv_to_bgr_ms_p50": round(float(np.median(convert)), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack bench lores", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--variant", default="full")
    args = p.parse_args(argv)
    print(json.dumps(bench(args.frames, args.rounds, args.variant)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
