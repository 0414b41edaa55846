"""Live view sink: an HTTP server showing the annotated video and the current tracks.

  the VideoFeed's routes (view_http.py): /, /stream.mjpg, /snapshot.jpg, /tracks.json, /healthz, /metrics
  /snapshots/<track id>.jpg  that track's best face view (snapshots.py), 404 when there is none

The page (live_page.py) shows the MJPEG stream and a table of the tracks, names included.
The routes are the live view's own table (view_http.Routes): the privacy view composes its
own from the feed's alone, so nothing added here reaches it.
"""
from __future__ import annotations

import re
import time
from http import HTTPStatus
from pathlib import Path

from common.config import HttpConfig, SinkConfig
from common.prometheus import StackMetrics
from common.recent import RecentMap
from services.sinks.base import Sink
from services.sinks.drawing import colour_hex, draw_tracks
from services.sinks.live_page import PAGE
from services.sinks.pairing import Paired
from services.sinks.snapshots import KEPT, Snapshot, find_on_disk, snapshot_dir
from services.sinks.view_http import Routes, ServedView, VideoFeed, ViewHandler

SNAPSHOT_PATH = re.compile(r"/snapshots/(\d{1,9})\.jpg")


class LiveView(Sink, kind="live"):
    latest_only = True
    wants_metrics = True
    wants_snapshots = True
    options = ("port",)

    @classmethod
    def from_context(cls, ctx) -> LiveView:
        cfg, port = ctx.config, ctx.args.port
        return cls(cfg.sink, cfg.sink.http_port if port is None else port, cfg.stack.id,
                   StackMetrics(cfg.monitor.interval_s, cfg.watchdog.silent_periods), cfg.http, snapshot_dir(cfg))

    def __init__(self, cfg: SinkConfig, port: int, stack: str, metrics: StackMetrics, http: HttpConfig,
                 snapshots: Path):
        self.cfg = cfg
        self.stack = stack
        self.snapshot_dir = snapshots
        self.snapshots: RecentMap = RecentMap(KEPT)  # track id -> JPEG of its best view
        self.feed = VideoFeed(cfg, metrics, PAGE.format(stack=stack).encode())
        self.served = ServedView(f"sink {self.kind}", cfg.http_host, port, http, cfg.client_timeout_s)

    def routes(self) -> Routes:
        """Everything this view serves: the feed, and each track's face snapshot."""
        return self.feed.routes().add(Routes(get_patterns=[(SNAPSHOT_PATH, self._track_snapshot)]))

    def start(self) -> None:
        self.served.start(self.routes())

    @property
    def url(self) -> str:
        return self.served.url

    def handle(self, paired: Paired) -> None:
        record = paired.record(time.time())
        for track in record["tracks"]:
            track["color"] = colour_hex(track["id"])
        self.feed.put(draw_tracks(paired.pixels, paired.tracks.tracks, paired.names), record)

    def on_metrics(self, msg) -> None:
        self.feed.metrics_table.update(msg)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.remember(snapshot.track_id, snapshot.jpeg)  # dict ops: safe beside the HTTP threads

    def track_snapshot(self, track_id: int) -> bytes | None:
        """The newest snapshot of `track_id`: seen by this view, else saved by any sink before."""
        jpeg = self.snapshots.get(track_id)
        if jpeg is not None:
            return jpeg
        path = find_on_disk(self.snapshot_dir, self.stack, track_id)
        try:
            return None if path is None else path.read_bytes()
        except OSError:  # removed by retention meanwhile
            return None

    def _track_snapshot(self, req: ViewHandler, match) -> None:
        jpeg = self.track_snapshot(int(match[1]))
        if jpeg is None:
            req.send(HTTPStatus.NOT_FOUND, "text/plain", b"no snapshot of that track\n")
        else:
            req.send(HTTPStatus.OK, "image/jpeg", jpeg)

    def stats(self) -> dict[str, float]:
        return {**self.feed.stats(), **self.served.stats()}

    def close(self) -> None:
        self.feed.close()
        self.served.close()
