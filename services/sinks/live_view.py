"""Live view sink: an HTTP server showing the annotated video and the current tracks.

  /             HTML page: the MJPEG stream and a table of tracks (polled every 200 ms)
  /stream.mjpg  multipart/x-mixed-replace JPEG frames with the tracks drawn
  /snapshot.jpg the newest annotated frame
  /tracks.json  the newest tracks (the recorder's JSONL record, plus a colour per track)
  /snapshots/<track key>.jpg  that track's best face view (snapshots.py; the key names the
                tracker run and the track id, common/runs.py; a bare track id is one of the
                current run), 404 when there is none
  /healthz      200 while frames arrive, 503 before the first or after 5 s without one
  /metrics      every stage's newest metrics in Prometheus text format (prometheus.py)

The server runs in its own threads (one per client); the bus loop only hands the newest
frame to `LatestFrame`, so a slow or stalled client skips frames and never slows the bus.
It is a GuardedServer (common/http_server.py): every route but /healthz needs the `http:`
credentials when any are set (and off loopback they must be), /metrics also takes the
metrics bearer token, optional TLS, a bounded number of connections.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from http import HTTPStatus
from pathlib import Path

from common.config import HttpConfig, SinkConfig
from common.http_access import Access
from common.http_server import GuardedHandler, GuardedServer
from common.prometheus import CONTENT_TYPE as PROMETHEUS_TYPE, StackMetrics
from common.recent import RecentMap
from common.runs import track_key
from services.sinks.base import Sink
from services.sinks.drawing import colour_hex, draw_tracks
from services.sinks.latest import LatestFrame
from services.sinks.live_page import PAGE
from services.sinks.pairing import Paired
from services.sinks.snapshots import KEPT, Snapshot, find_on_disk, snapshot_dir

log = logging.getLogger("sink.live")

BOUNDARY = "frame"
SNAPSHOT_PATH = re.compile(r"/snapshots/((?:[0-9a-f]{16}-)?\d{1,9})\.jpg")


class _Server(GuardedServer):
    def __init__(self, address, view: "LiveView", access: Access):
        super().__init__(address, _Handler, access, view.http, f"sink {view.kind}")
        self.view = view


class _Handler(GuardedHandler):
    """Routes GET; the access check ran before (GuardedHandler.parse_request)."""

    server: _Server

    # typeshed has StreamRequestHandler.timeout as a plain class variable; setup() reads it per connection
    @property
    def timeout(self) -> float:  # type: ignore[override]
        """A client that takes no bytes for this long is disconnected (read by setup())."""
        return self.server.view.cfg.client_timeout_s

    def do_GET(self):
        route = {"/": self._page, "/index.html": self._page, "/stream.mjpg": self._stream,
                 "/snapshot.jpg": self._snapshot, "/tracks.json": self._tracks, "/healthz": self._health,
                 "/metrics": self._metrics}
        path = self.path.split("?", 1)[0]
        handler = route.get(path)
        if handler is None and SNAPSHOT_PATH.fullmatch(path):
            handler = self._track_snapshot
        if handler is None:
            self.server.counters.count("http_refused", f"{self.address_string()}: 404 {self.path[:80]!r}")
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
            return
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("client %s went away", self.address_string())

    def _send(self, status, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _page(self):
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.view.page)

    def _snapshot(self):
        jpeg = self.server.view.latest.jpeg()
        if jpeg is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
        else:
            self._send(HTTPStatus.OK, "image/jpeg", jpeg[1])

    def _track_snapshot(self):
        ref = SNAPSHOT_PATH.fullmatch(self.path.split("?", 1)[0])[1]
        view = self.server.view
        jpeg = view.track_snapshot(ref if "-" in ref else track_key(view.run_id, int(ref)))
        if jpeg is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no snapshot of that track\n")
        else:
            self._send(HTTPStatus.OK, "image/jpeg", jpeg)

    def _tracks(self):
        record = self.server.view.latest.record()
        if record is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "application/json", b'{"error": "no tracks yet"}\n')
        else:
            self._send(HTTPStatus.OK, "application/json", json.dumps(record).encode())

    def _health(self):
        age = self.server.view.latest.age_s()
        ok = age is not None and age < self.server.view.cfg.stale_s
        body = {"ok": ok, "frame_age_s": age, "clients": self.server.view.streams}
        self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, "application/json",
                   json.dumps(body).encode())

    def _metrics(self):
        self._send(HTTPStatus.OK, PROMETHEUS_TYPE, self.server.view.metrics_table.render())

    def _stream(self):
        view = self.server.view
        if not view.enter_stream():
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"too many viewers\n")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            while not view.latest.closed:
                if view.latest.wait_newer(seq, timeout=1.0) <= seq:
                    continue
                jpeg = view.latest.jpeg()
                if jpeg is None:
                    continue
                seq, data = jpeg
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
        finally:
            view.leave_stream()


class LiveView(Sink, kind="live"):
    latest_only = True
    wants_metrics = True
    wants_snapshots = True
    options = ("port",)

    @classmethod
    def from_context(cls, ctx) -> LiveView:
        cfg, port = ctx.config, ctx.args.port
        return cls(cfg.sink, cls.default_port(cfg) if port is None else port, cfg.stack.id,
                   StackMetrics(cfg.monitor.interval_s, cfg.watchdog.silent_periods), cfg.http, snapshot_dir(cfg))

    @staticmethod
    def default_port(cfg) -> int:
        return cfg.sink.http_port

    def __init__(self, cfg: SinkConfig, port: int, stack: str, metrics: StackMetrics, http: HttpConfig,
                 snapshots: Path):
        self.cfg = cfg  # host, JPEG quality, stale time, stream limit, client timeout
        self.http = http  # credentials, TLS, connection bound
        self.stack = stack
        self.snapshot_dir = snapshots
        self.snapshots: RecentMap = RecentMap(KEPT)  # track key -> JPEG of its best view
        self.run_id = 0  # the tracker run of the newest tracks shown
        self.host, self.port = cfg.http_host, port
        self.metrics_table = metrics
        self.latest = LatestFrame(cfg.jpeg_quality)
        self.page = PAGE.format(stack=stack).encode()
        self.streams = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        access = Access.from_config(self.http, self.host, self.port, f"sink {self.kind}", "sink.http_host")
        self._server = _Server((self.host, self.port), self, access)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()
        log.info("live view at %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._server.scheme if self._server else 'http'}://{host}:{self.port}/"

    def handle(self, paired: Paired) -> None:
        self.run_id = paired.tracks.run_id
        record = paired.record(time.time())
        for track in record["tracks"]:
            track["color"] = colour_hex(track["id"])
        self.latest.put(draw_tracks(paired.pixels, paired.tracks.tracks, paired.names), record)

    def on_metrics(self, msg) -> None:
        self.metrics_table.update(msg)

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

    def stats(self) -> dict[str, float]:
        doors = self._server.counters.counts if self._server else {}
        return {"clients": self.streams, "jpeg_encoded": self.latest.encoded, "jpeg_ms": self.latest.encode_ms,
                "connections": self._server.connections if self._server else 0, **doors}

    def enter_stream(self) -> bool:
        with self._lock:
            if self.streams >= self.cfg.max_streams:
                return False
            self.streams += 1
            return True

    def leave_stream(self) -> None:
        with self._lock:
            self.streams -= 1

    def close(self) -> None:
        self.latest.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None  # started with the server
            self._thread.join(timeout=5)
