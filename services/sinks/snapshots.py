"""Face snapshots: the best view of each track's face, as a JPEG crop kept on disk and in memory.

Which view is best: the identity service's when it runs. It embeds a track's face on the frames
whose view quality (models/facerec/quality.py: eye distance x frontality x detector score, from
the landmarks) beats the best so far, and says so in an Identity message (`frame_id`,
`quality`); the book then crops that frame, still in the ring, at the track's box there, and
from then on only a better identity view replaces it. Until then, or without an identity
service, a view's quality is the face's visible size (the square root of the box area inside
the frame, in pixels) times the detector's score: large, unoccluded faces win; a view replaces
the snapshot when it beats it by `snapshots.better_view`, at most once every
`snapshots.min_interval_s`. Pixels are read from the ring only for the frames used.

A track is named by its key (common/runs.py: the tracker run and the track id), as ids start
again at 1 in each tracker run; a new run ends every live track. Files are
`<sink.record_dir>/snapshots/<stack>-<track start>-<track key>.jpg`, written through
a temporary file and a rename, so a reader never sees half a JPEG and two sink processes
writing the same snapshot do not collide. A view is written once: a sink process finding the same
bytes already there (another sink of the stack made the same crop of the same frame) leaves the
file alone, and a track that the tracker hid for a frame or two and publishes again under the
same id keeps its snapshot and its file (only a better view replaces them). They live under
the record directory, so the recordings' retention (size and age; services/sinks/retention.py) bounds them too: the loop of
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
from common.messages import Frame, Identity, Track, Tracks
from common.recent import RecentMap
from common.runs import RunWatch, track_key

log = logging.getLogger("sink.snapshots")

KEPT = 32  # snapshots of ended tracks kept in memory (the newest ones; older ones are read from disk)
RECENT = 64  # frames whose Frame message and track boxes are kept for a late identity view


def snapshot_dir(cfg: Config) -> Path:
    return Path(cfg.sink.record_dir) / "snapshots"


def url_path(key: str) -> str:
    """Where the live view serves a track's snapshot (`key`: common/runs.py's track_key)."""
    return f"/snapshots/{key}.jpg"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    track_id: int
    key: str  # the track beyond its run (common/runs.py)
    frame_id: int
    t_capture: float
    quality: float
    box: tuple[float, float, float, float]  # the face's box in the frame (the crop adds a margin)
    jpeg: bytes
    path: Path  # the file; it may be missing when the write failed or retention removed it
    scored_by: str = "size"  # "identity": `quality` is the identity service's view quality

    def summary(self) -> dict:
        """The form events refer to a snapshot by."""
        return {"url": url_path(self.key), "file": self.path.name, "frame_id": self.frame_id,
                "quality": round(self.quality, 2), "scored_by": self.scored_by, "bytes": len(self.jpeg)}


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
    identity_quality: float = 0.0  # > 0 once the identity service chose a view: only a better one of its replaces it


class SnapshotBook:
    """The current snapshot of every live track, and of the last `KEPT` ended ones."""

    def __init__(self, cfg: SnapshotsConfig, directory: Path, stack: str):
        self.cfg = cfg
        self.directory = directory
        self.stack = stack
        self.live: dict[str, _Best] = {}  # track key -> its best view so far
        self.ended: RecentMap = RecentMap(KEPT)  # track key -> _Best of an ended track (one back continues it)
        self.run = RunWatch()  # the tracker run of `live`
        self.frames: RecentMap = RecentMap(RECENT)  # frame id -> Frame message
        self.boxes: RecentMap = RecentMap(RECENT)  # (tracker run, frame id) -> {track id: box}
        self.made = self.written = self.write_errors = self.stale = self.identity_views = self.identity_missed = 0

    @classmethod
    def from_config(cls, cfg: Config) -> SnapshotBook:
        return cls(cfg.snapshots, snapshot_dir(cfg), cfg.stack.id)

    def get(self, key: str) -> Snapshot | None:
        """The snapshot of the track `key` (track_key(run, id)), live or recently ended."""
        best = self.live.get(key) or self.ended.get(key)
        return None if best is None else best.snapshot

    def remember(self, msg: Frame | Tracks) -> None:
        """Every Frame and Tracks message (skipped ones too): an identity view may name their frame."""
        if isinstance(msg, Frame):
            self.frames.remember(msg.frame_id, msg)
        else:
            self.boxes.remember((msg.run_id, msg.frame_id), {t.id: t.box for t in msg.tracks})

    def identity_view(self, msg: Identity, pixels: Callable[[Frame], np.ndarray | None]) -> Snapshot | None:
        """The identity service's better view of a live track: that frame's face, if still in the ring."""
        run = msg.run_id or self.run.run or 0
        key = track_key(run, msg.track_id)
        best = self.live.get(key)
        if best is None or msg.quality <= best.identity_quality:
            return None  # not a live confirmed track, or a republished / no better view
        frame, box = self.frames.get(msg.frame_id), self.boxes.get((run, msg.frame_id), {}).get(msg.track_id)
        image = None if frame is None or box is None else pixels(frame)
        if frame is None or image is None:
            self.identity_missed += 1
            return None
        snapshot = self._make(image, frame, msg.track_id, key, box, msg.quality, best, "identity")
        if snapshot is not None:
            best.snapshot, best.t_saved, best.identity_quality = snapshot, time.monotonic(), msg.quality
            self.identity_views += 1
        return snapshot

    def see(self, frame, tracks, pixels: Callable[[], np.ndarray | None]) -> list[Snapshot]:
        """Update from one frame's tracks; `pixels()` reads the frame (only called when needed).

        Returns the snapshots made from this frame (new tracks, better views)."""
        restarted = self.run.changed(tracks.run_id)  # a new tracker run numbers its tracks afresh
        self._end_missing(set() if restarted else {track_key(tracks.run_id, t.id) for t in tracks.tracks})
        now = time.monotonic()
        wanted = []
        for t in tracks.tracks:
            if t.state != "confirmed":
                continue
            key = track_key(tracks.run_id, t.id)
            best = self.live.get(key)
            if best is None:  # new, or back after the tracker hid it: then it keeps its view and file
                best = self.live[key] = self.ended.pop(key, None) or _Best(tracks.t_capture)
            if best.identity_quality > 0:
                continue  # the identity service chooses this track's views now
            quality = view_quality(t, frame.width, frame.height)
            if quality <= 0 or min(t.box[2] - t.box[0], t.box[3] - t.box[1]) < self.cfg.min_face_px:
                continue
            if best.snapshot is not None and (quality < best.snapshot.quality * self.cfg.better_view
                                              or now - best.t_saved < self.cfg.min_interval_s):
                continue
            wanted.append((t, key, quality, best))
        if not wanted:
            return []
        image = pixels()
        if image is None:  # overwritten in the ring already: the next frame will do
            self.stale += 1
            return []
        made = []
        for t, key, quality, best in wanted:
            snapshot = self._make(image, frame, t.id, key, t.box, quality, best, "size")
            if snapshot is not None:
                best.snapshot, best.t_saved = snapshot, now
                made.append(snapshot)
        return made

    def _end_missing(self, present: set[str]) -> None:
        for key in [key for key in self.live if key not in present]:
            self.ended.remember(key, self.live.pop(key))

    def _make(self, image: np.ndarray, frame: Frame, track_id: int, key: str, box: list[float], quality: float,
              best: _Best, scored_by: str) -> Snapshot | None:
        face = crop(image, box, self.cfg.margin)
        if face is None:
            return None
        ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(best.t_start))
        path = self.directory / f"{self.stack}-{stamp}-{key}.jpg"
        x1, y1, x2, y2 = box  # four numbers (Track checks)
        snapshot = Snapshot(track_id, key, frame.frame_id, frame.t_capture, quality, (x1, y1, x2, y2), buf.tobytes(), path,
                            scored_by)
        self._write(snapshot)
        self.made += 1
        return snapshot

    def _write(self, snapshot: Snapshot) -> None:
        tmp = snapshot.path.with_name(f".{snapshot.path.name}.{os.getpid()}.tmp")
        try:
            if snapshot.path.exists() and snapshot.path.read_bytes() == snapshot.jpeg:
                return  # another sink process of the stack wrote this very view
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(snapshot.jpeg)
            os.replace(tmp, snapshot.path)
            self.written += 1
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 100 == 0:
                log.error("snapshot %s not saved (%d so far): %s", snapshot.path, self.write_errors, exc)
            tmp.unlink(missing_ok=True)

    def stats(self) -> dict[str, float]:
        return {"snapshots_made": self.made, "snapshots_written": self.written, "snapshot_write_errors": self.write_errors,
                "snapshot_stale": self.stale, "snapshot_identity_views": self.identity_views,
                "snapshot_identity_missed": self.identity_missed}


def find_on_disk(directory: Path, stack: str, key: str) -> Path | None:
    """The newest snapshot file of track `key` (for one a restarted live view never saw)."""
    files = sorted(directory.glob(f"{stack}-*-{key}.jpg"))
    return files[-1] if files else None
