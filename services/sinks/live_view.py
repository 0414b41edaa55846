"""Live view sink: an HTTP server showing the annotated video, the faces, and a face library.

  the VideoFeed's routes (view_http.py): /, /stream.mjpg, /snapshot.jpg, /tracks.json, /healthz, /metrics
  /snapshots/<track key>.jpg  that track's best face view (snapshots.py; the key names the
                tracker run and the track id, common/runs.py; a bare track id is one of the
                current run), 404 when there is none
  the FaceLibrary's routes (face_library.py): faces now and recent, live events, health,
  naming a face, the People page

The page (web/live.html, live.js) shows the MJPEG stream, a table of the tracks, the Faces
(now), Recent and Health panels updated by Server-Sent Events, and "Name…" on each face.
The routes are the live view's own table (view_http.Routes): the privacy view composes its
own from the feed's alone, so nothing added here reaches it.
"""
from __future__ import annotations

import html
import re
import time
from http import HTTPStatus
from pathlib import Path

from common.config import HttpConfig, SinkConfig
from common.prometheus import StackMetrics
from common.recent import RecentMap
from common.runs import TRACK_KEY, track_key
from services.sinks.base import Sink
from services.sinks.face_library import WEB, FaceLibrary
from services.sinks.drawing import colour_hex, draw_tracks
from services.sinks.pairing import Paired
from services.sinks.snapshots import KEPT, Snapshot, find_on_disk, snapshot_dir
from services.sinks.view_http import Routes, ServedView, VideoFeed, ViewHandler

SNAPSHOT_PATH = re.compile(rf"/snapshots/({TRACK_KEY}|\d{{1,9}})\.jpg")


class LiveView(Sink, kind="live"):
    latest_only = True
    wants_metrics = True
    wants_snapshots = True
    wants_gallery = True
    options = ("port",)

    @classmethod
    def from_context(cls, ctx) -> LiveView:
        cfg, port = ctx.config, ctx.args.port
        return cls(cfg.sink, cfg.sink.http_port if port is None else port, cfg.stack.id,
                   StackMetrics(cfg.monitor.interval_s, cfg.watchdog.silent_periods), cfg.http, snapshot_dir(cfg),
                   Path(cfg.identity.gallery), ctx.publisher)

    def __init__(self, cfg: SinkConfig, port: int, stack: str, metrics: StackMetrics, http: HttpConfig,
                 snapshots: Path, gallery: Path, publisher):
        self.cfg = cfg
        self.stack = stack
        self.snapshot_dir = snapshots
        self.snapshots: RecentMap = RecentMap(KEPT)  # track key -> JPEG of its best view
        self.run_id = 0  # the tracker run of the newest tracks shown
        page = (WEB / "live.html").read_text().replace("__STACK__", html.escape(stack))
        self.feed = VideoFeed(cfg, metrics, page.encode())
        self.library = FaceLibrary(cfg, self.feed, gallery, publisher, self.track_snapshot)
        self.served = ServedView(f"sink {self.kind}", cfg.http_host, port, http, cfg.client_timeout_s)

    def routes(self) -> Routes:
        """Everything this view serves: the feed, each track's face snapshot, the face library."""
        return (self.feed.routes().add(Routes(get_patterns=[(SNAPSHOT_PATH, self._track_snapshot)]))
                .add(self.library.routes()))

    def start(self) -> None:
        self.served.start(self.routes())

    @property
    def url(self) -> str:
        return self.served.url

    def handle(self, paired: Paired) -> None:
        self.run_id = paired.tracks.run_id
        record = paired.record(time.time())
        for track in record["tracks"]:
            track["color"] = colour_hex(track["id"])
        self.library.see(record, paired.tracks.run_id, time.time())
        self.feed.put(draw_tracks(paired.pixels, paired.tracks.tracks, paired.names), record)

    def on_identity(self, msg) -> None:
        self.library.named(msg.run_id, msg.track_id, msg.name)

    def on_gallery_reply(self, msg) -> None:
        self.library.on_reply(msg)

    def tick(self) -> None:
        self.library.send_requests()

    def on_metrics(self, msg) -> None:
        self.feed.metrics_table.update(msg)

    def on_down(self, down: dict[str, str]) -> None:
        self.feed.set_down(down)

    def on_silence(self, quiet_s: float) -> None:
        """Nobody is present: none on /tracks.json, every face of the Faces panel moves to Recent."""
        self.feed.silence()
        self.library.see({"tracks": []}, self.run_id, time.time())

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.remember(snapshot.key, snapshot.jpeg)  # dict ops: safe beside the HTTP threads

    def track_snapshot(self, key: str) -> bytes | None:
        """The newest snapshot of track `key`: seen by this view, else saved by any sink before."""
        jpeg = self.snapshots.get(key)
        if jpeg is not None:
            return jpeg
        path = find_on_disk(self.snapshot_dir, self.stack, key)
        try:
            return None if path is None else path.read_bytes()
        except OSError:  # removed by retention meanwhile
            return None

    def _track_snapshot(self, req: ViewHandler, match) -> None:
        ref = match[1]
        jpeg = self.track_snapshot(ref if "-" in ref else track_key(self.run_id, int(ref)))
        if jpeg is None:
            req.send(HTTPStatus.NOT_FOUND, "text/plain", b"no snapshot of that track\n")
        else:
            req.send(HTTPStatus.OK, "image/jpeg", jpeg)

    def stats(self) -> dict[str, float]:
        return {**self.feed.stats(), **self.served.stats(), **self.library.stats()}

    def close(self) -> None:
        self.feed.close()
        self.served.close()
