"""What the live and privacy views share: a route table, the server that serves only it, and the video feed.

A view is composed, never inherited: each view builds its `Routes` from the parts it means
to expose (the `VideoFeed`'s routes, and for the live view its own), and `ViewServer`
answers 404 to everything else. A route added to one view therefore reaches no other view
unless that view adds it too: the privacy view is an allow-list.

  VideoFeed routes:
  /             the view's HTML page
  /stream.mjpg  multipart/x-mixed-replace JPEG frames (drawn by the view)
  /snapshot.jpg the newest frame
  /tracks.json  the newest tracks (the recorder's JSONL record, as the view fills it in); none, with
                "stale": true, once no tracks came for tracker.max_lost_s (the video stopped: `silence`)
  /healthz      200 while frames arrive, 503 before the first, after `sink.stale_s` without one, or while
                a stage that should run does not ("down": program -> why, from the watchdog: `set_down`)
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
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import numpy as np

from common.config import HttpConfig, SinkConfig
from common.http_access import Access
from common.http_server import GuardedHandler, GuardedServer
from common.prometheus import CONTENT_TYPE as PROMETHEUS_TYPE, StackMetrics
from services.sinks.latest import LatestFrame

log = logging.getLogger("sink.http")

BOUNDARY = "frame"

Handler = Callable[["ViewHandler", "re.Match[str] | None"], None]


@dataclass
class Routes:
    """Exact paths and path patterns per method; nothing else is served."""
    get: dict[str, Handler] = field(default_factory=dict)
    get_patterns: list[tuple[re.Pattern[str], Handler]] = field(default_factory=list)
    post: dict[str, Handler] = field(default_factory=dict)

    def add(self, other: Routes) -> Routes:
        self.get.update(other.get)
        self.get_patterns.extend(other.get_patterns)
        self.post.update(other.post)
        return self

    def find(self, method: str, path: str) -> tuple[Handler, re.Match[str] | None] | None:
        if method == "POST":
            handler = self.post.get(path)
            return None if handler is None else (handler, None)
        if path in self.get:
            return self.get[path], None
        for pattern, handler in self.get_patterns:
            match = pattern.fullmatch(path)
            if match:
                return handler, match
        return None

    def paths(self) -> list[tuple[str, str]]:
        """(method, path or pattern) of every route, for tests and docs."""
        return ([("GET", p) for p in self.get] + [("GET", p.pattern) for p, _ in self.get_patterns]
                + [("POST", p) for p in self.post])


class ViewHandler(GuardedHandler):
    """Routes GET and POST through the server's table; the access check ran before (parse_request)."""

    server: ViewServer

    # typeshed has StreamRequestHandler.timeout as a plain class variable; setup() reads it per connection
    @property
    def timeout(self) -> float:  # type: ignore[override]
        """A client that takes no bytes for this long is disconnected (read by setup())."""
        return self.server.client_timeout_s

    @property
    def route_path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        found = self.server.routes.find(method, self.route_path)
        if found is None:
            self.refuse(HTTPStatus.NOT_FOUND, f"{method} {self.path[:80]!r}: no such route")
            return
        handler, match = found
        try:
            handler(self, match)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("client %s went away", self.address_string())

    def send(self, status, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, value) -> None:
        self.send(status, "application/json", json.dumps(value).encode())

    def json_body(self, limit: int) -> dict | None:
        """The JSON object of a state-changing POST, or None once refused (and counted).

        CSRF: the browser's Origin header must name this very server (scheme and Host), and a
        fetch from Sec-Fetch-Site other than same-origin is refused; a form from another site
        cannot send `application/json` without a preflight this server never answers. The
        body must say its length and stay within `limit` bytes, and be a JSON object."""
        origin = self.headers.get("Origin")
        own = f"{self.server.scheme}://{self.headers.get('Host', '')}"
        if origin != own or self.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            self.refuse(HTTPStatus.FORBIDDEN, f"POST {self.route_path} from origin {str(origin)[:80]!r}: "
                        "only this page's own origin may change things")
            return None
        if self.headers.get_content_type() != "application/json":
            self.refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"POST {self.route_path}: the body must be application/json")
            return None
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.refuse(HTTPStatus.LENGTH_REQUIRED, f"POST {self.route_path}: no Content-Length")
            return None
        if int(length) > limit:
            self.refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"POST {self.route_path}: {int(length)} bytes "
                        f"(at most {limit})")
            return None
        try:
            value = json.loads(self.rfile.read(int(length)))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            self.refuse(HTTPStatus.BAD_REQUEST, f"POST {self.route_path}: not JSON ({str(exc)[:80]})")
            return None
        if not isinstance(value, dict):
            self.refuse(HTTPStatus.BAD_REQUEST, f"POST {self.route_path}: not a JSON object")
            return None
        return value

    def refuse(self, status: HTTPStatus, why: str) -> None:
        """A counted refusal (`http_refused`), answered with one line of JSON saying why."""
        self.server.counters.count("http_refused", f"{self.address_string()}: {int(status)} {why}")
        self.close_connection = True
        self.send_json(status, {"error": why})


class ViewServer(GuardedServer):
    """A GuardedServer that serves exactly `routes`."""

    def __init__(self, address, routes: Routes, access: Access, http: HttpConfig, name: str, client_timeout_s: float):
        super().__init__(address, ViewHandler, access, http, name)
        self.routes = routes
        self.client_timeout_s = client_timeout_s


class VideoFeed:
    """The newest frame and tracks, every stage's metrics, the stages down, and the page: what any view shows."""

    def __init__(self, cfg: SinkConfig, metrics: StackMetrics, page: bytes):
        self.cfg = cfg
        self.latest = LatestFrame(cfg.jpeg_quality)
        self.metrics_table = metrics
        self.page = page
        self.streams = 0
        self.down: dict[str, str] = {}  # stages that should run and do not (read by /healthz)
        self._lock = threading.Lock()

    def put(self, image: np.ndarray, record: dict) -> None:
        self.latest.put(image, record)

    def set_down(self, down: dict[str, str]) -> None:
        """The watchdog's stages down (the view's `on_down`): /healthz is 503 while any is."""
        self.down = down

    def silence(self) -> None:
        """No tracks for tracker.max_lost_s (the view's `on_silence`): /tracks.json stops serving the
        last tracks as if they were there."""
        self.latest.forget_tracks()

    def routes(self) -> Routes:
        return Routes(get={"/": self._page, "/index.html": self._page, "/stream.mjpg": self._stream,
                           "/snapshot.jpg": self._snapshot, "/tracks.json": self._tracks, "/healthz": self._health,
                           "/metrics": self._metrics})

    def enter_stream(self) -> bool:
        """Take one of `sink.max_streams` long-lived responses (MJPEG, events); False when all are taken."""
        with self._lock:
            if self.streams >= self.cfg.max_streams:
                return False
            self.streams += 1
            return True

    def leave_stream(self) -> None:
        with self._lock:
            self.streams -= 1

    def stats(self) -> dict[str, float]:
        return {"clients": self.streams, "jpeg_encoded": self.latest.encoded, "jpeg_ms": self.latest.encode_ms}

    def close(self) -> None:
        self.latest.close()

    def _page(self, req: ViewHandler, _match) -> None:
        req.send(HTTPStatus.OK, "text/html; charset=utf-8", self.page)

    def _snapshot(self, req: ViewHandler, _match) -> None:
        jpeg = self.latest.jpeg()
        if jpeg is None:
            req.send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
        else:
            req.send(HTTPStatus.OK, "image/jpeg", jpeg[1])

    def _tracks(self, req: ViewHandler, _match) -> None:
        record = self.latest.record()
        if record is None:
            req.send(HTTPStatus.SERVICE_UNAVAILABLE, "application/json", b'{"error": "no tracks yet"}\n')
        else:
            req.send_json(HTTPStatus.OK, record)

    def _health(self, req: ViewHandler, _match) -> None:
        age, down = self.latest.age_s(), self.down
        ok = age is not None and age < self.cfg.stale_s and not down
        req.send_json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                      {"ok": ok, "frame_age_s": age, "down": down, "clients": self.streams})

    def _metrics(self, req: ViewHandler, _match) -> None:
        req.send(HTTPStatus.OK, PROMETHEUS_TYPE, self.metrics_table.render())

    def _stream(self, req: ViewHandler, _match) -> None:
        if not self.enter_stream():
            req.send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"too many viewers\n")
            return
        try:
            req.send_response(HTTPStatus.OK)
            req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            req.send_header("Cache-Control", "no-store")
            req.end_headers()
            seq = 0
            while not self.latest.closed:
                if self.latest.wait_newer(seq, timeout=1.0) <= seq:
                    continue
                jpeg = self.latest.jpeg()
                if jpeg is None:
                    continue
                seq, data = jpeg
                req.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
        finally:
            self.leave_stream()


class ServedView:
    """A ViewServer in its own thread, started and stopped with the sink that owns it."""

    def __init__(self, what: str, host: str, port: int, http: HttpConfig, client_timeout_s: float):
        self.what, self.host, self.port, self.http = what, host, port, http
        self.client_timeout_s = client_timeout_s
        self.server: ViewServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, routes: Routes) -> None:
        access = Access.from_config(self.http, self.host, self.port, self.what, "sink.http_host")
        self.server = ViewServer((self.host, self.port), routes, access, self.http, self.what, self.client_timeout_s)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        self._thread.start()
        log.info("%s: live view at %s", self.what, self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.server.scheme if self.server else 'http'}://{host}:{self.port}/"

    def stats(self) -> dict[str, float]:
        if self.server is None:
            return {}
        return {"connections": self.server.connections, **self.server.counters.counts}

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            assert self._thread is not None  # started with the server
            self._thread.join(timeout=5)
            self.server = None
