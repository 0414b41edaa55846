"""Reading a test or calibration image: cv2.imread returns None for a file it cannot read,
which would fail later, far from the file; this says which file at once."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_image(path: Path | str) -> np.ndarray:
    """The BGR image in `path`; ValueError naming the file if it is missing or not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image
