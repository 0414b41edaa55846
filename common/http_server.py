"""The stack's HTTP server: http.server with its doors closed (auth, TLS, bounded connections).

Used by the live and privacy views and the watchdog's exporter. What it adds to
ThreadingHTTPServer:

- Access (common/http_access.py) is checked in `parse_request`, before any `do_*` method
  routes, so every route and method, present or future, needs credentials (but the open
  paths, /healthz); a refusal is 401 with `WWW-Authenticate: Basic realm="facetrack"`.
- TLS (`http.tls_cert`, `http.tls_key`): each connection is wrapped and handshaken in its own
  thread, so a client that never handshakes holds only its own thread.
- At most `http.max_connections` connections at once. A connection must finish its TLS
  handshake and its request head (request line, headers, credentials) within
  `http.head_timeout_s` (a client sending one byte a second is closed then; so is an idle
  keep-alive connection); when the server is full, the connection that has waited longest
  for its head is closed to make room, and if every connection is past its head (serving
  requests, streams), the new one gets 503. A slowloris thus cannot lock others out.
- Malformed requests get the stdlib's 4xx (400, 414, 431, 501) and are counted; nothing a
  client sends reaches the log as a traceback. Counters: `DoorCounters`.
"""
from __future__ import annotations

import logging
import socket
import sys
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common.config import HttpConfig
from common.http_access import Access
from common.service import InputError

log = logging.getLogger("http")

REALM = "facetrack"
LOG_EVERY = 100  # a failure of each kind is logged the first time and every LOG_EVERY-th after
MAX_HEADERS = 64  # http.client reads 100; a view's client sends about 10


def tls_context(cfg: HttpConfig) -> ssl.SSLContext | None:
    """The server's TLS context from http.tls_cert/tls_key, or None; one line naming the file if bad."""
    if not (cfg.tls_cert or cfg.tls_key):
        return None
    if not (cfg.tls_cert and cfg.tls_key):
        raise InputError("http.tls_cert and http.tls_key must be set together")
    for key, path in (("http.tls_cert", cfg.tls_cert), ("http.tls_key", cfg.tls_key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"{key} {path}: cannot read ({exc.strerror})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    except ssl.SSLError as exc:
        raise InputError(f"http.tls_cert {cfg.tls_cert} / http.tls_key {cfg.tls_key}: not a PEM certificate "
                         f"and its key ({exc.reason or exc})") from None
    return context


class DoorCounters:
    """What the doors refused, for the service's metrics; each kind logged first and every LOG_EVERY-th."""

    KINDS = ("auth_failures", "http_refused", "http_timeouts", "http_evicted", "http_rejected", "tls_failures")

    def __init__(self, name: str):
        self.name = name
        self.counts = dict.fromkeys(self.KINDS, 0)
        self._lock = threading.Lock()

    def count(self, kind: str, detail: str) -> None:
        with self._lock:
            self.counts[kind] += 1
            n = self.counts[kind]
        if n == 1 or n % LOG_EVERY == 0:  # what a client sent is escaped: no control characters in the log
            detail = "".join(c if c.isprintable() else repr(c)[1:-1] for c in detail[:200])
            log.warning("%s: %s (%s: %d so far)", self.name, detail, kind, n)


class _Waiting:
    """Connections that have not finished their head yet, with their deadlines; a reaper thread
    closes those past it, and the oldest is closed to make room when the server is full."""

    def __init__(self, timeout_s: float, counters: DoorCounters):
        self.timeout_s, self.counters = timeout_s, counters
        self._since: dict[socket.socket, float] = {}  # insertion order = age
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reap, name="http-reaper", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket) -> None:
        """Start `sock`'s clock, unless it runs already (the handshake and the head share one)."""
        with self._lock:
            self._since.setdefault(sock, time.monotonic())

    def holds(self, sock: socket.socket) -> bool:
        """False once `sock` was closed for taking too long (or to make room)."""
        with self._lock:
            return sock in self._since

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._since.pop(sock, None)

    def evict_oldest(self) -> bool:
        with self._lock:
            if not self._since:
                return False
            sock = next(iter(self._since))
            del self._since[sock]
        _shut(sock)
        self.counters.count("http_evicted", "server full: closed the connection waiting longest for its request")
        return True

    def _reap(self) -> None:
        while not self._stop.wait(min(0.25, self.timeout_s / 4)):
            limit = time.monotonic() - self.timeout_s
            with self._lock:
                late = [s for s, t in self._since.items() if t < limit]
                for sock in late:
                    del self._since[sock]
            for sock in late:
                try:
                    peer = sock.getpeername()[0]
                except OSError:
                    peer = "a client"
                _shut(sock)
                self.counters.count("http_timeouts", f"{peer} took over {self.timeout_s:g} s for its request head, closed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _shut(sock: socket.socket) -> None:
    """Wake the thread blocked reading `sock` (plain or TLS) with EOF; that thread closes it."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class GuardedServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with access checks, optional TLS and a bounded number of connections."""

    daemon_threads = True

    def __init__(self, address, handler, access: Access, cfg: HttpConfig, name: str):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.tls = tls_context(cfg)  # before binding: a bad file is a start error either way
        self.access = access
        self.counters = DoorCounters(name)
        self.waiting = _Waiting(cfg.head_timeout_s, self.counters)
        self.max_connections = cfg.max_connections
        self.request_queue_size = max(128, cfg.max_connections)  # listen backlog: socketserver's 5 drops SYNs in a flood
        self.connections = 0
        self._count_lock = threading.Lock()
        try:
            super().__init__(address, handler)
        except BaseException:
            self.waiting.close()
            raise

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def process_request(self, request, client_address):
        """Runs in the accept loop: never blocks on a client. When full, the connection waiting
        longest for its head makes room (its thread wakes to EOF and ends, so the count is over
        max_connections only for that moment); with none waiting, the new one gets 503."""
        with self._count_lock:
            full = self.connections >= self.max_connections
            if not full:
                self.connections += 1
        if full:
            if not self.waiting.evict_oldest():
                self.counters.count("http_rejected", f"server full ({client_address[0]} turned away)")
                if self.tls is None:
                    try:
                        request.setblocking(False)
                        request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    except OSError:
                        pass
                self.shutdown_request(request)
                return
            with self._count_lock:
                self.connections += 1
        self.waiting.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._leave(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._leave(request)

    def _leave(self, request) -> None:
        self.waiting.remove(request)
        with self._count_lock:
            self.connections -= 1

    def finish_request(self, request, client_address):
        """In the connection's thread: the TLS handshake (under the head deadline), then the handler."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(self.waiting.timeout_s)
        try:
            conn = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            self.counters.count("tls_failures", f"TLS from {client_address[0]} failed ({exc})")
            return
        self.waiting.remove(request)
        self.waiting.add(conn)
        try:
            conn.do_handshake()
            super().finish_request(conn, client_address)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            if not self.waiting.holds(conn):
                pass  # closed by the reaper or to make room, and counted there
            elif isinstance(exc, TimeoutError):
                self.counters.count("http_timeouts", f"{client_address[0]} sent no TLS handshake bytes "
                                    f"for {self.waiting.timeout_s:g} s, closed")
            else:
                self.counters.count("tls_failures", f"TLS from {client_address[0]} failed ({exc.__class__.__name__}: {exc})")
        finally:
            self.waiting.remove(conn)
            self.shutdown_request(conn)

    def handle_error(self, request, client_address):
        """One line, no traceback: a client must not be able to write one into the log."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("client %s: %s", client_address[0], exc)
        else:
            log.error("client %s: %s: %s", client_address[0], exc.__class__.__name__, exc)

    def server_close(self):
        super().server_close()
        self.waiting.close()


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose every request is checked against the server's Access first."""

    server: GuardedServer

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def handle_one_request(self):
        self.server.waiting.add(self.request)  # a keep-alive connection waits for its next head on the same clock
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not self.server.waiting.holds(self.request):  # cut off by the reaper in its request line
            self.close_connection = True
            return False
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # no headers, so no credentials: nobody's client speaks it
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not served")
            return False
        if not self.server.waiting.holds(self.request):  # cut off by the reaper: what came is not a request
            self.close_connection = True
            return False
        if len(self.headers) > MAX_HEADERS:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        if not self.server.access.allows(self.path, self.headers.get("Authorization")):
            self.server.counters.count("auth_failures", f"{self.address_string()} not authorised for {self.path[:80]!r}")
            self.close_connection = True
            body = b"401 unauthorized\n"
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return False
        self.server.waiting.remove(self.request)
        return True

    def send_error(self, code, message=None, explain=None):
        if code >= 400:  # a malformed or unsupported request (the stdlib's own checks land here too)
            self.server.counters.count("http_refused", f"{self.address_string()}: {int(code)} {message or ''}".strip())
        if self.request_version == "HTTP/0.9":  # garbage, or a request line cut short: answer with a status line
            self.request_version = "HTTP/1.0"
        try:
            super().send_error(code, message, explain)
        except OSError:
            self.close_connection = True
