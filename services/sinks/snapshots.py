"""Face snapshots: the best view of each track's face, as a JPEG crop kept on disk and in memory.

A view's quality is the face's visible size (the square root of the box area inside the frame,
in pixels) times the detector's score: large, sharp, unoccluded faces win. The tracks carry no
landmarks, so the identity service's frontality score is not available here. A track's snapshot
is replaced when a view beats it by `snapshots.better_view`, at most once every
`snapshots.min_interval_s`; pixels are read from the ring only for those frames.

Files are `<sink.record_dir>/snapshots/<stack>-<track start>-<track id>.jpg`, written through
a temporary file and a rename, so a reader never sees half a JPEG and two sink processes
writing the same snapshot do not collide. They live under the record directory, so the
recordings' retention (size and age; services/sinks/retention.py) bounds them too: the loop of
a sink that keeps snapshots prunes that directory even when the sink writes nothing else. A failed write (a full disk) is
counted and logged once a hundred; the snapshot stays in memory and is still handed to the
sink. The sink loop (services/sink.py) keeps one book for each sink kind that asks
(`Sink.wants_snapshots`): the live view serves them, the MQTT sink publishes them. The
privacy view never asks.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from common.config import Config, SnapshotsConfig
from common.messages import Track
from common.recent import RecentMap

log = logging.getLogger("sink.snapshots")

KEPT = 32  # snapshots of ended tracks kept in memory (the newest ones; older ones are read from disk)


def snapshot_dir(cfg: Config) -> Path:
    return Path(cfg.sink.record_dir) / "snapshots"


def url_path(track_id: int) -> str:
    """Where the live view serves a track's snapshot."""
    return f"/snapshots/{track_id}.jpg"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    track_id: int
    frame_id: int
    t_capture: float
    quality: float
    box: tuple[float, float, float, float]  # the face's box in the frame (the crop adds a margin)
    jpeg: bytes
    path: Path  # the file; it may be missing when the write failed or retention removed it

    def summary(self) -> dict:
        """The form events refer to a snapshot by."""
        return {"url": url_path(self.track_id), "file": self.path.name, "frame_id": self.frame_id,
                "quality": round(self.quality, 2), "bytes": len(self.jpeg)}


def view_quality(track: Track, width: int, height: int) -> float:
    """sqrt(visible box area) x score: a face half outside the frame scores by what is visible."""
    x1, y1, x2, y2 = track.box
    w = max(0.0, min(x2, width) - max(x1, 0.0))
    h = max(0.0, min(y2, height) - max(y1, 0.0))
    return math.sqrt(w * h) * float(track.score)


def crop(image: np.ndarray, box, margin: float) -> np.ndarray | None:
    """The box grown by `margin` of its size on every side, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = image.shape[:2]
    ix1, iy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    ix2, iy2 = min(w, int(math.ceil(x2 + mx))), min(h, int(math.ceil(y2 + my)))
    if ix2 - ix1 < 2 or iy2 - iy1 < 2:
        return None
    return image[iy1:iy2, ix1:ix2]


@dataclasses.dataclass
class _Best:
    t_start: float  # t_capture of the track's first confirmed frame: names the file
    snapshot: Snapshot | None = None
    t_saved: float = -math.inf  # monotonic time of the last replacement


class SnapshotBook:
    """The current snapshot of every live track, and of the last `KEPT` ended ones."""

    def __init__(self, cfg: SnapshotsConfig, directory: Path, stack: str):
        self.cfg = cfg
        self.directory = directory
        self.stack = stack
        self.live: dict[int, _Best] = {}
        self.ended: RecentMap = RecentMap(KEPT)
        self.last_frame_id = -1
        self.made = self.write_errors = self.stale = 0

    @classmethod
    def from_config(cls, cfg: Config) -> SnapshotBook:
        return cls(cfg.snapshots, snapshot_dir(cfg), cfg.stack.id)

    def get(self, track_id: int) -> Snapshot | None:
        best = self.live.get(track_id)
        if best is not None:
            return best.snapshot
        return self.ended.get(track_id)

    def see(self, frame, tracks, pixels: Callable[[], np.ndarray | None]) -> list[Snapshot]:
        """Update from one frame's tracks; `pixels()` reads the frame (only called when needed).

        Returns the snapshots made from this frame (new tracks, better views)."""
        restarted = tracks.frame_id < self.last_frame_id  # a restarted tracker numbers its tracks afresh
        self.last_frame_id = tracks.frame_id
        self._end_missing(set() if restarted else {t.id for t in tracks.tracks})
        now = time.monotonic()
        wanted = []
        for t in tracks.tracks:
            if t.state != "confirmed":
                continue
            best = self.live.setdefault(t.id, _Best(tracks.t_capture))
            quality = view_quality(t, frame.width, frame.height)
            if quality <= 0 or min(t.box[2] - t.box[0], t.box[3] - t.box[1]) < self.cfg.min_face_px:
                continue
            if best.snapshot is not None and (quality < best.snapshot.quality * self.cfg.better_view
                                              or now - best.t_saved < self.cfg.min_interval_s):
                continue
            wanted.append((t, quality, best))
        if not wanted:
            return []
        image = pixels()
        if image is None:  # overwritten in the ring already: the next frame will do
            self.stale += 1
            return []
        made = []
        for t, quality, best in wanted:
            snapshot = self._make(image, frame, tracks, t, quality, best)
            if snapshot is not None:
                best.snapshot, best.t_saved = snapshot, now
                made.append(snapshot)
        return made

    def _end_missing(self, present: set[int]) -> None:
        for tid in [tid for tid in self.live if tid not in present]:
            best = self.live.pop(tid)
            if best.snapshot is not None:
                self.ended.remember(tid, best.snapshot)

    def _make(self, image, frame, tracks, track: Track, quality: float, best: _Best) -> Snapshot | None:
        face = crop(image, track.box, self.cfg.margin)
        if face is None:
            return None
        ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(best.t_start))
        path = self.directory / f"{self.stack}-{stamp}-{track.id}.jpg"
        x1, y1, x2, y2 = track.box  # four numbers (Track checks)
        snapshot = Snapshot(track.id, frame.frame_id, tracks.t_capture, quality, (x1, y1, x2, y2), buf.tobytes(), path)
        self._write(snapshot)
        self.made += 1
        return snapshot

    def _write(self, snapshot: Snapshot) -> None:
        tmp = snapshot.path.with_name(f".{snapshot.path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(snapshot.jpeg)
            os.replace(tmp, snapshot.path)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 100 == 0:
                log.error("snapshot %s not saved (%d so far): %s", snapshot.path, self.write_errors, exc)
            tmp.unlink(missing_ok=True)

    def stats(self) -> dict[str, float]:
        return {"snapshots_made": self.made, "snapshot_write_errors": self.write_errors,
                "snapshot_stale": self.stale}


def find_on_disk(directory: Path, stack: str, track_id: int) -> Path | None:
    """The newest snapshot file of `track_id` (for one a restarted live view never saw)."""
    files = sorted(directory.glob(f"{stack}-*-{track_id}.jpg"))
    return files[-1] if files else None
