"""Readers for the test data in shared/data (OTB clips in MOTChallenge layout, WIDER FACE sample)."""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

# The one rule for where the test data lies: $FACETRACK_DATA if set, else ../shared/data beside
# the checkout. Tests (tests/needs.py), eval and the benches all read it from here.
DATA_DIR = Path(os.environ.get("FACETRACK_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
DATA_HINT = "put the data beside the checkout as ../shared/data, or point FACETRACK_DATA at it"

Sample = tuple[Path, np.ndarray]  # image, gt boxes (K, 4) xyxy in 0-based pixels


def mot_sequences(data_dir: Path = DATA_DIR) -> list[Path]:
    return sorted(p.parent for p in data_dir.glob("*/seqinfo.ini"))


def read_mot(seq_dir: Path) -> list[Sample]:
    """Frames with their gt boxes; gt.txt is 1-based (MATLAB style), so 1 is subtracted."""
    boxes = defaultdict(list)
    for line in (seq_dir / "gt" / "gt.txt").read_text().split():
        frame, _id, left, top, w, h = (float(v) for v in line.split(",")[:6])
        boxes[int(frame)].append([left - 1, top - 1, left - 1 + w, top - 1 + h])
    images = sorted((seq_dir / "img1").glob("*.jpg"))
    return [(img, np.asarray(boxes.get(int(img.stem), []), np.float32).reshape(-1, 4)) for img in images]


def read_wider(wider_dir: Path) -> list[Sample]:
    """Images with their valid faces (WIDER's `invalid` flag set: left out)."""
    lines = (wider_dir / "gt.txt").read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        name, count = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, ln.split())) for ln in lines[i + 2:i + 2 + max(count, 1)]][:count]
        faces = [[x, y, x + w, y + h] for x, y, w, h, _b, _e, _il, invalid, *_ in rows if not invalid]
        out.append((wider_dir / "images" / name, np.asarray(faces, np.float32).reshape(-1, 4)))
        i += 2 + max(count, 1)
    return out


def datasets(data_dir: Path = DATA_DIR) -> dict[str, list[Sample]]:
    """Every sequence of the data dir by name: the MOT clips, then widerface-sample."""
    out = {seq.name: read_mot(seq) for seq in mot_sequences(data_dir)}
    if (data_dir / "widerface-sample" / "gt.txt").is_file():
        out["widerface-sample"] = read_wider(data_dir / "widerface-sample")
    return out
