"""The live view's face library: who is here now, who was here, the stack's health, and naming faces.

  /faces.json        {"faces": tracks now, "recent": ended tracks, "health": ...} (what /events pushes)
  /events            the same, as Server-Sent Events, about twice a second while frames arrive
  /live.js, /people.js, /style.css   the pages' script and style (services/sinks/web/, nothing from elsewhere)
  /people            the People page; /people.json its data; /people/<face id>.jpg an enrolment thumbnail
  POST /faces/name       {"track": K, "name": S}: enrol the face of track K (its track key: tracker run
                         and id, common/runs.py) as S (a new person or another view)
  POST /people/rename    {"name": S, "new_name": T}
  POST /people/remove    {"name": S}: every face of S, securely deleted from the gallery file

The identity service owns the gallery: a POST becomes a GalleryRequest on the bus (sent from
the sink loop's thread in `tick`, as ZeroMQ sockets belong to one thread), and the HTTP
thread waits for the GalleryReply with the same id (`sink.gallery_timeout_s`); the page shows
its one line. The pages only read the gallery file (read-only SQLite) to list people.
Every POST passes view_http's door (same origin, JSON, `sink.max_body_bytes`), and names are
checked here before they travel (common.gallery.check_name) and again by the service.

Faces and Recent come from the frames' records: a track is "now" from its first record on,
and moves to Recent (newest first, `sink.recent_faces` kept) when it leaves the records, or
when its tracker run ends; the list lives in the sink process, so a page reload finds it.
Each face is named by its track key, on the page and in the request to name it: a restarted
tracker numbers other faces from 1 again, and naming a recent face must never enrol the face
a new run gave the same id.
"""
from __future__ import annotations

import collections
import json
import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

from common.service import Sender
from common.config import SinkConfig
from common.gallery import BadName, Gallery, GalleryError, check_name
from common.messages import GalleryReply, GalleryRequest
from common.prometheus import StackMetrics
from common.runs import parse_track_key, track_key
from services.sinks.snapshots import url_path
from services.sinks.view_http import Routes, VideoFeed, ViewHandler

log = logging.getLogger("sink.faces")

WEB = Path(__file__).with_name("web")
THUMBNAIL_PATH = re.compile(r"/people/(\d{1,9})\.jpg")
EVENT_PERIOD_S = 0.5
MAX_THUMBNAIL = 256 * 1024  # a snapshot is a face crop: tens of kB
BOARD_KEYS = ("temp_c", "throttled_flags")  # common/board.py, in a stage's Metrics.extra


@dataclass
class Seen:
    """A track on the page (`key`: common/runs.py's track key): when it was first and last in a record, its name."""
    key: str
    track_id: int
    first: float
    last: float
    name: str = ""

    def row(self) -> dict:
        return {"track": self.key, "track_id": self.track_id, "name": self.name, "first": round(self.first, 3),
                "last": round(self.last, 3), "duration_s": round(self.last - self.first, 1),
                "thumbnail": url_path(self.key)}


@dataclass
class _Pending:
    request: GalleryRequest
    done: threading.Event = field(default_factory=threading.Event)
    reply: GalleryReply | None = None


def health(metrics: StackMetrics, down: dict[str, str]) -> dict:
    """A compact summary of every stage's newest metrics: fps, p50, drops, up; restarts; board; and
    `down`, the stages that should run and do not (the watchdog's, program -> why)."""
    now = time.time()
    latest, received = metrics.newest()
    stages = [{"service": name, "fps": round(m.fps, 1), "p50_ms": round(m.p50_ms, 1), "dropped": m.dropped,
               "errors": m.errors, "up": now - received[name] <= metrics.fresh_s}
              for name, m in sorted(latest.items())]
    out: dict = {"stages": stages, "down": down}
    watchdog = latest.get("watchdog")
    if watchdog is not None and "restarts" in watchdog.extra:
        out["restarts"] = int(watchdog.extra["restarts"])
    board = {k: max(m.extra[k] for m in latest.values() if k in m.extra)
             for k in BOARD_KEYS if any(k in m.extra for m in latest.values())}
    if board:
        out["board"] = board
    return out


class FaceLibrary:
    """The face panels' state (updated by the bus thread), the gallery requests, and their routes."""

    def __init__(self, cfg: SinkConfig, feed: VideoFeed, gallery: Path, publisher: Sender,
                 snapshot_of: Callable[[str], bytes | None]):
        self.cfg, self.feed, self.gallery, self.publisher = cfg, feed, gallery, publisher
        self.snapshot_of = snapshot_of  # a track's face snapshot by key: the thumbnail stored with an enrolled face
        self.now: dict[str, Seen] = {}  # track key -> the track on the page
        self.recent: collections.deque[Seen] = collections.deque(maxlen=cfg.recent_faces)
        self._lock = threading.Lock()  # now/recent: written by the bus thread, read by HTTP threads
        self._outbox: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._pending: dict[str, _Pending] = {}
        self.requests = self.refused_names = self.unanswered = 0

    # --- the bus thread ---

    def see(self, record: dict, run_id: int, t: float) -> None:
        """One frame's record (names filled in) of tracker run `run_id`: update the tracks now, move the
        gone ones (every one of an ended run among them) to Recent."""
        present = {track_key(run_id, tr["id"]): (tr["id"], tr.get("name", "")) for tr in record["tracks"]}
        with self._lock:
            for key in [key for key in self.now if key not in present]:
                self.recent.appendleft(self.now.pop(key))
            for key, (tid, name) in present.items():
                seen = self.now.setdefault(key, Seen(key, tid, t, t))
                seen.last, seen.name = t, name or seen.name

    def named(self, run_id: int, track_id: int, name: str) -> None:
        """A name from the identity service: a recent face named after it left shows it too."""
        key = track_key(run_id, track_id)
        with self._lock:
            for seen in self.recent:
                if seen.key == key:
                    seen.name = name

    def send_requests(self) -> None:
        while True:
            try:
                pending = self._outbox.get_nowait()
            except queue.Empty:
                return
            self.publisher.send(pending.request)

    def on_reply(self, msg: GalleryReply) -> None:
        pending = self._pending.pop(msg.request_id, None)
        if pending is not None:
            pending.reply = msg
            pending.done.set()

    # --- HTTP threads ---

    def state(self) -> dict:
        with self._lock:
            faces = [s.row() for s in sorted(self.now.values(), key=lambda s: s.first)]
            recent = [s.row() for s in self.recent]
        return {"t": round(time.time(), 3), "faces": faces, "recent": recent,
                "health": health(self.feed.metrics_table, self.feed.down)}

    def ask(self, request: GalleryRequest) -> GalleryReply | None:
        """Send `request` to the identity service; its reply, or None after sink.gallery_timeout_s."""
        pending = _Pending(request)
        self._pending[request.request_id] = pending
        self.requests += 1
        self._outbox.put(pending)
        if not pending.done.wait(self.cfg.gallery_timeout_s):
            self._pending.pop(request.request_id, None)
            self.unanswered += 1
            return None
        return pending.reply

    def routes(self) -> Routes:
        files = {f"/{name}": self._file(name, kind) for name, kind in
                 (("live.js", "text/javascript"), ("people.js", "text/javascript"), ("style.css", "text/css"))}
        return Routes(get={"/faces.json": self._faces, "/events": self._events, "/people": self._people_page,
                           "/people.json": self._people, **files},
                      get_patterns=[(THUMBNAIL_PATH, self._thumbnail)],
                      post={"/faces/name": self._name, "/people/rename": self._rename, "/people/remove": self._remove})

    def stats(self) -> dict[str, float]:
        return {"gallery_requests": self.requests, "gallery_unanswered": self.unanswered,
                "names_refused": self.refused_names, "faces_now": len(self.now), "faces_recent": len(self.recent)}

    def _file(self, name: str, content_type: str):
        body = (WEB / name).read_bytes()

        def serve(req: ViewHandler, _match) -> None:
            req.send(HTTPStatus.OK, f"{content_type}; charset=utf-8", body)
        return serve

    def _faces(self, req: ViewHandler, _match) -> None:
        req.send_json(HTTPStatus.OK, self.state())

    def _events(self, req: ViewHandler, _match) -> None:
        if not self.feed.enter_stream():
            req.send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"too many viewers\n")
            return
        try:
            req.send_response(HTTPStatus.OK)
            req.send_header("Content-Type", "text/event-stream")
            req.send_header("Cache-Control", "no-store")
            req.end_headers()
            seq = -1
            while not self.feed.latest.closed:
                req.wfile.write(f"data: {json.dumps(self.state())}\n\n".encode())
                req.wfile.flush()
                time.sleep(EVENT_PERIOD_S)
                seq = self.feed.latest.wait_newer(seq, timeout=5.0)  # no frames: a heartbeat every 5 s
        finally:
            self.feed.leave_stream()

    def _people_page(self, req: ViewHandler, _match) -> None:
        req.send(HTTPStatus.OK, "text/html; charset=utf-8", (WEB / "people.html").read_bytes())

    def _people(self, req: ViewHandler, _match) -> None:
        if not self.gallery.is_file():
            req.send_json(HTTPStatus.OK, {"people": []})
            return
        try:
            with Gallery(self.gallery, read_only=True) as gallery:
                faces = gallery.faces()
        except GalleryError as e:
            req.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})
            return
        people: dict[str, list] = {}
        for f in faces:
            people.setdefault(f.name, []).append({"id": f.id, "created": f.created, "source": f.source,
                                                  "thumbnail": f"/people/{f.id}.jpg" if f.thumbnail else None})
        req.send_json(HTTPStatus.OK, {"people": [{"name": n, "faces": fs} for n, fs in people.items()]})

    def _thumbnail(self, req: ViewHandler, match) -> None:
        jpeg = None
        if self.gallery.is_file():
            try:
                with Gallery(self.gallery, read_only=True) as gallery:
                    jpeg = gallery.thumbnail(int(match[1]))
            except GalleryError:
                jpeg = None
        if jpeg is None:
            req.send(HTTPStatus.NOT_FOUND, "text/plain", b"no such thumbnail\n")
        else:
            req.send(HTTPStatus.OK, "image/jpeg", jpeg)

    def _checked_name(self, req: ViewHandler, value) -> str | None:
        """A valid name, or None once refused with its one line (400, counted)."""
        try:
            if not isinstance(value, str):
                raise BadName("a name must be a string")
            return check_name(value)
        except BadName as e:
            self.refused_names += 1
            req.refuse(HTTPStatus.BAD_REQUEST, str(e))
            return None

    def _answer(self, req: ViewHandler, request: GalleryRequest) -> None:
        reply = self.ask(request)
        if reply is None:
            req.send_json(HTTPStatus.GATEWAY_TIMEOUT, {"error": f"the identity service did not answer in "
                                                                f"{self.cfg.gallery_timeout_s:g} s: is it running?"})
        elif reply.ok:
            req.send_json(HTTPStatus.OK, {"ok": True, "detail": reply.detail, "name": reply.name, "faces": reply.faces})
        else:
            req.send_json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": reply.detail})

    def _name(self, req: ViewHandler, _match) -> None:
        body = req.json_body(self.cfg.max_body_bytes)
        if body is None:
            return
        key = body.get("track")
        track = parse_track_key(key) if isinstance(key, str) else None
        if track is None:
            req.refuse(HTTPStatus.BAD_REQUEST, "track must be a track's key as the faces list gives it "
                                               "(tracker run in hex, '-', track id)")
            return
        name = self._checked_name(req, body.get("name"))
        if name is None:
            return
        run_id, track_id = track
        thumbnail = self.snapshot_of(track_key(run_id, track_id)) or b""
        self._answer(req, GalleryRequest(request_id=secrets.token_hex(8), action="enrol", name=name, track_id=track_id,
                                         run_id=run_id, thumbnail=thumbnail if len(thumbnail) <= MAX_THUMBNAIL else b""))

    def _rename(self, req: ViewHandler, _match) -> None:
        body = req.json_body(self.cfg.max_body_bytes)
        if body is None:
            return
        old = body.get("name")
        if not isinstance(old, str) or not old.strip():
            req.refuse(HTTPStatus.BAD_REQUEST, "name must name an enrolled person")
            return
        new = self._checked_name(req, body.get("new_name"))
        if new is None:
            return
        self._answer(req, GalleryRequest(request_id=secrets.token_hex(8), action="rename", name=old[:256],
                                         new_name=new))

    def _remove(self, req: ViewHandler, _match) -> None:
        body = req.json_body(self.cfg.max_body_bytes)
        if body is None:
            return
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            req.refuse(HTTPStatus.BAD_REQUEST, "name must name an enrolled person")
            return
        self._answer(req, GalleryRequest(request_id=secrets.token_hex(8), action="remove", name=name[:256]))
