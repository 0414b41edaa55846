"""The HTTP doors of the live view and the watchdog's exporter, as real processes on real sockets:
who may come in (Basic credentials, the metrics bearer token), TLS verified against a
certificate made here by openssl, a refused start off loopback without credentials, and
hostile clients (garbage, absurd headers, slowloris, never-handshaking TLS) that are refused
and counted while a normal client is still served in time, with no traceback in the log."""
from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

import cv2
import numpy as np
import pytest

from common.config import HttpConfig
from common.http_access import hash_password, is_loopback, load_entries
from cdp_support import Browser
from common.service import InputError
from needs import tool
from services.sinks.drawing import track_colour
from sink_support import ROOT, colour_distance
from stack_support import wait_for
from test_sink_browser import POS, chromium, chromium_problem, screenshot  # noqa: F401 (chromium_problem: a fixture)

USER, PASSWORD = "ada", "correct horse"
ENV_USER, ENV_PASSWORD = "grace", "battery staple"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(url: str, authorization: str | None = None, context: ssl.SSLContext | None = None,
            timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """(status, headers lower-cased, body) of one GET over a raw socket (TLS when `context`)."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as raw:
        sock = context.wrap_socket(raw, server_hostname=u.hostname) if context else raw
        head = f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n"
        if authorization:
            head += f"Authorization: {authorization}\r\n"
        sock.sendall((head + "\r\n").encode())
        f = sock.makefile("rb")
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline().strip()):
            key, value = line.decode().split(":", 1)
            headers[key.lower()] = value.strip()
        body = f.read(int(headers["content-length"])) if "content-length" in headers else b""
        return status, headers, body


def raw_reply(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """What the server answers to `data` (b"" if it just closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may close while a huge request is still being sent
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


@pytest.fixture
def secrets_dir(tmp_path):
    """A credentials file (one plain and one scrypt-hashed user) and a metrics token file, mode 0600."""
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "users").write_text(f"# facetrack users\n{USER}:{PASSWORD}\nbob:{hash_password('bob pw')}\n")
    (d / "token").write_text("s3cret-token\n")
    for f in d.iterdir():
        f.chmod(0o600)
    return d


def guarded_sink(stack, secrets_dir, *extra: str, kind: str = "live", host: str = "0.0.0.0"):
    sink = stack.sink("--kind", kind, "--port", "0", f"--set=sink.http_host={host}",
                      f"--set=http.credentials_file={secrets_dir / 'users'}",
                      f"--set=http.metrics_token_file={secrets_dir / 'token'}", *extra)
    port = int(sink.wait_log(r"live view at https?://\S+:(\d+)/").group(1))
    return sink, port


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.8.0.1", True),
                                           ("0.0.0.0", False), ("", False), ("::", False), ("192.168.1.20", False),
                                           ("board.local", False)])
def test_loopback_is_what_stays_on_this_machine(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("kind", ["live", "privacy"])
def test_off_loopback_without_credentials_the_view_refuses_to_start_in_one_line(stack, kind):
    sink = stack.sink("--kind", kind, "--port", "0", "--set=sink.http_host=0.0.0.0")
    assert sink.proc.wait(timeout=30) == 3
    log = sink.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert f"sink {kind}: refusing to listen on 0.0.0.0:0 without credentials" in errors[0], errors[0]
    assert "http.credentials_file" in errors[0] and "FACETRACK_HTTP_USER" in errors[0] and "sink.http_host" in errors[0]
    assert "Traceback" not in log


def test_a_bad_credentials_file_or_environment_is_one_line(tmp_path, caplog):
    users = tmp_path / "users"
    users.write_text("ada:pw\njust-a-name\n")
    users.chmod(0o600)
    with pytest.raises(InputError, match=f"http.credentials_file {users} line 2: expected user:password"):
        load_entries(HttpConfig(credentials_file=str(users)), environ={})
    with pytest.raises(InputError, match="http.credentials_file .*/nope: cannot read \\(No such file"):
        load_entries(HttpConfig(credentials_file=str(tmp_path / "nope")), environ={})
    with pytest.raises(InputError, match="FACETRACK_HTTP_USER and FACETRACK_HTTP_PASSWORD .* must be set together"):
        load_entries(HttpConfig(), environ={"FACETRACK_HTTP_USER": "ada"})
    users.write_text("ada:pw\n")
    users.chmod(0o644)
    with caplog.at_level("WARNING"):
        assert len(load_entries(HttpConfig(credentials_file=str(users)), environ={})) == 1
    assert "readable by group or others (mode 644): chmod 600 it" in caplog.text


def test_credentials_and_the_metrics_token_guard_every_route_but_healthz(stack, secrets_dir, monkeypatch):
    monkeypatch.setenv("FACETRACK_HTTP_USER", ENV_USER)
    monkeypatch.setenv("FACETRACK_HTTP_PASSWORD", ENV_PASSWORD)
    sink, port = guarded_sink(stack, secrets_dir)
    url = f"http://127.0.0.1:{port}/"
    good = basic(USER, PASSWORD)
    stack.publish_until(lambda: request(url + "tracks.json", good)[0] == 200)

    for path in ("", "tracks.json", "snapshot.jpg", "stream.mjpg", "metrics", "snapshots/1.jpg", "no/such/route",
                 "faces.json", "events", "people", "people.json", "people/1.jpg", "live.js"):  # the face library's too
        status, headers, _ = request(url + path)
        assert status == 401, path
        assert headers["www-authenticate"] == 'Basic realm="facetrack"'
    for path in ("/faces/name", "/people/rename", "/people/remove"):  # its changes: refused before the body is read
        body = b'{"name": "Eve"}'
        reply = raw_reply(port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert reply.startswith(b"HTTP/1.0 401"), (path, reply[:100])
    for wrong in (basic(USER, "wrong"), basic("eve", PASSWORD), basic(ENV_USER, PASSWORD), "Basic !!notb64",
                  basic(USER, PASSWORD + "x"), "Bearer s3cret-token", f"Digest {good[6:]}"):
        assert request(url + "tracks.json", wrong)[0] == 401, wrong
    for right in (good, basic("bob", "bob pw"), basic(ENV_USER, ENV_PASSWORD)):  # file, hashed, environment
        assert request(url + "tracks.json", right)[0] == 200
    status, headers, body = request(url + "snapshot.jpg", good)
    assert status == 200 and body[:2] == b"\xff\xd8"
    status, _, body = request(url + "snapshots/1.jpg", good)  # track 1's face snapshot, behind the same door
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert request(url + "snapshots/7.jpg", good)[0] == 404  # track 7 is never confirmed: no snapshot
    assert request(url + "healthz")[0] == 200  # open for probes: frame age only

    assert request(url + "metrics", "Bearer s3cret-token")[0] == 200
    assert request(url + "metrics", "Bearer wrong-token")[0] == 401
    assert request(url + "metrics", good)[0] == 200
    assert request(url + "tracks.json", "Bearer s3cret-token")[0] == 401  # the token is for /metrics only

    m = stack.wait_metrics("sink-live", lambda m: m.extra.get("auth_failures", 0) >= 25)
    assert m.extra["auth_failures"] == 25
    log = sink.log()
    assert log.count("not authorised") == 1, log  # the first failure; then every 100th

    privacy, port = guarded_sink(stack, secrets_dir, kind="privacy")  # the same doors, on its own port
    privacy_url = f"http://127.0.0.1:{port}/tracks.json"
    stack.publish_until(lambda: request(privacy_url, good)[0] == 200)
    assert request(privacy_url)[0] == request(privacy_url, basic(USER, "wrong"))[0] == 401
    assert [s.stop() for s in (sink, privacy)] == [0, 0]


def test_a_full_server_answers_503_and_serves_again_when_a_stream_ends(stack, secrets_dir):
    """Connections past their head (two streams here) are never closed to make room: a third gets 503."""
    sink, port = guarded_sink(stack, secrets_dir, "--set=http.max_connections=2", host="127.0.0.1")
    url = f"http://127.0.0.1:{port}/"
    good = basic(USER, PASSWORD)
    stack.publish_until(lambda: request(url + "tracks.json", good)[0] == 200)
    # the server lets go of those requests' connections in its own threads: start from none held
    stack.publish_until(lambda: (m := stack.newest_metrics("sink-live")) is not None and m.extra.get("connections") == 0)
    with stack.publishing(fps=30):
        streams = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nAuthorization: {good}\r\n\r\n".encode())
            assert s.recv(12) == b"HTTP/1.0 200"
            streams.append(s)
        assert raw_reply(port, b"")[:12] == b"HTTP/1.1 503"
        streams.pop().close()
        wait_for(lambda: request(url + "tracks.json", good)[0] == 200, 10, what="served again")
        streams[0].close()
    m = stack.wait_metrics("sink-live", lambda m: m.extra.get("http_rejected", 0) >= 1)
    assert m.extra["http_evicted"] == 0
    assert sink.stop() == 0


def test_tls_is_verified_against_the_certificate_and_a_silent_tcp_client_blocks_no_one(stack, secrets_dir, tmp_path):
    openssl = tool("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    key.chmod(0o600)
    sink, port = guarded_sink(stack, secrets_dir, f"--set=http.tls_cert={cert}", f"--set=http.tls_key={key}",
                              "--set=http.max_connections=4", "--set=http.head_timeout_s=1.5")
    assert f"live view at https://0.0.0.0:{port}/" in sink.log()
    url = f"https://127.0.0.1:{port}/"
    trusted = ssl.create_default_context(cafile=str(cert))
    good = basic(USER, PASSWORD)
    stack.publish_until(lambda: request(url + "tracks.json", good, trusted)[0] == 200)
    assert request(url + "tracks.json", None, trusted)[0] == 401

    with pytest.raises(ssl.SSLCertVerificationError):
        request(url + "tracks.json", good, ssl.create_default_context())  # the system CAs do not know it
    assert raw_reply(port, b"GET /tracks.json HTTP/1.1\r\nHost: x\r\n\r\n")[:4] != b"HTTP"  # no plain HTTP on it

    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]  # TCP, then no handshake
    try:
        for _ in range(5):  # served while 12 silent clients hold more than max_connections: they are evicted
            assert request(url + "snapshot.jpg", good, trusted)[0] == 200  # (http_evicted below), not waited out
    finally:
        for s in silent:
            s.close()
    alone = socket.create_connection(("127.0.0.1", port), timeout=10)  # with room to spare: closed at the deadline
    t0 = time.monotonic()
    assert alone.recv(100) == b"" and time.monotonic() - t0 > 1.4, time.monotonic() - t0  # not before its deadline
    alone.close()
    m = stack.wait_metrics("sink-live", lambda m: m.extra.get("http_evicted", 0) >= 5 and m.extra["http_timeouts"] >= 1)
    assert m.extra["tls_failures"] >= 1
    assert "Traceback" not in sink.log()
    assert sink.stop() == 0


def test_a_bad_tls_file_is_one_start_error_naming_it(stack, secrets_dir, tmp_path):
    missing = tmp_path / "nope.pem"
    sink = stack.sink("--kind", "live", "--port", "0", f"--set=http.credentials_file={secrets_dir / 'users'}",
                      f"--set=http.tls_cert={missing}", f"--set=http.tls_key={secrets_dir / 'token'}")
    assert sink.proc.wait(timeout=30) == 3
    errors = [line for line in sink.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"http.tls_cert {missing}: cannot read" in errors[0], sink.log()

    (tmp_path / "junk.pem").write_text("not a certificate\n")
    sink = stack.sink("--kind", "live", "--port", "0", f"--set=http.tls_cert={tmp_path / 'junk.pem'}",
                      f"--set=http.tls_key={tmp_path / 'junk.pem'}")
    assert sink.proc.wait(timeout=30) == 3
    errors = [line for line in sink.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "junk.pem" in errors[0] and "not a PEM certificate" in errors[0], sink.log()


class Slowloris:
    """`n` connections that each send a request head one byte every `gap` s, reconnecting when closed."""

    def __init__(self, port: int, n: int, gap: float = 0.3):
        self.port, self.n, self.gap = port, n, gap
        self.stop = threading.Event()
        self.closed_by_server = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        head = b"GET /tracks.json HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 10000
        conns = {}
        while not self.stop.is_set():
            for i in range(self.n):
                if i not in conns:
                    try:
                        conns[i] = [socket.create_connection(("127.0.0.1", self.port), timeout=0.2), 0]
                    except OSError:
                        continue
                sock, sent = conns[i]
                try:
                    sock.send(head[sent:sent + 1])
                    conns[i][1] += 1
                except OSError:
                    sock.close()
                    del conns[i]
                    self.closed_by_server += 1
            self.stop.wait(self.gap)
        for sock, _ in conns.values():
            sock.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def test_hostile_clients_are_refused_and_counted_while_a_normal_client_is_served(stack, secrets_dir):
    sink, port = guarded_sink(stack, secrets_dir, "--set=http.max_connections=8", "--set=http.head_timeout_s=2",
                              "--set=sink.client_timeout_s=2")
    url = f"http://127.0.0.1:{port}/"
    good = basic(USER, PASSWORD)
    auth = f"Authorization: {good}\r\n".encode()
    stack.publish_until(lambda: request(url + "tracks.json", good)[0] == 200)

    replies = {
        "garbage": raw_reply(port, os.urandom(3000)),
        "tls hello on http": raw_reply(port, bytes.fromhex("160301020001") + os.urandom(500)),
        "bad method": raw_reply(port, b"BREW /pot HTTP/1.1\r\n" + auth + b"\r\n"),
        "bad method, no credentials": raw_reply(port, b"DELETE / HTTP/1.1\r\n\r\n"),
        "bad version": raw_reply(port, b"GET / HTTP/9.9\r\n\r\n"),
        "no version": raw_reply(port, b"GET / FOO BAR\r\n\r\n"),
        "bad path": raw_reply(port, b"GET ../../etc/passwd HTTP/1.1\r\n" + auth + b"\r\n"),
        "huge request line": raw_reply(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"),
        "huge header": raw_reply(port, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n"),
        "header flood": raw_reply(port, b"GET / HTTP/1.1\r\n" + auth + b"".join(b"X-%d: y\r\n" % i for i in range(500))
                                  + b"\r\n"),
        "nul bytes": raw_reply(port, b"GET /\x00\x00 HTTP/1.1\r\n\x00\r\n\r\n"),
    }
    def post(path: str, body: bytes, origin: str = f"http://127.0.0.1:{port}", length: int | None = None) -> bytes:
        return raw_reply(port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n"
                               f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}"
                               f"\r\n".encode() + auth + b"\r\n" + body)
    posts = {  # the face library's state-changing routes: refused before anything reaches the identity service
        "cross-origin": (post("/faces/name", b'{"track": "0000000000000001-1", "name": "Eve"}', origin="http://evil.example"),
                         b"403"),
        "oversized": (post("/faces/name", b"{" + b" " * 200000 + b"}"), b"413"),
        "length beyond the body": (post("/people/remove", b"{}", length=10 ** 12), b"413"),
        "malformed": (post("/people/remove", b'{"name": '), b"400"),
        "nested": (post("/people/remove", b"[" * 2000 + b"]" * 2000), b"400"),
        "binary": (post("/people/rename", os.urandom(300)), b"400"),
        "bad name": (post("/faces/name", b'{"track": "0000000000000001-1", "name": "a\\nb"}'), b"400"),
        "a bare track id": (post("/faces/name", b'{"track_id": 1, "name": "Eve"}'), b"400"),  # names no tracker run
        "no such route": (post("/people/delete-all", b"{}"), b"404"),
    }
    for what, (reply, status) in posts.items():
        assert reply.split(b" ", 2)[1] == status and b"Traceback" not in reply, (what, reply[:300])
    for what, reply in replies.items():
        status = reply.split(b" ", 2)[1] if reply.startswith(b"HTTP/") else b""
        assert reply == b"" or status.startswith(b"4") or status.startswith(b"5"), (what, reply[:200])
    assert replies["huge request line"].startswith(b"HTTP/1.0 414")
    assert replies["huge header"].startswith(b"HTTP/1.0 431")
    assert replies["header flood"].startswith(b"HTTP/1.0 431")
    assert replies["bad method"].startswith(b"HTTP/1.0 501")
    assert replies["bad method, no credentials"].startswith(b"HTTP/1.0 401")
    assert replies["bad version"].startswith(b"HTTP/1.0 505")

    slow = socket.create_connection(("127.0.0.1", port), timeout=10)  # alone: cut off by the head deadline
    t0 = time.monotonic()
    try:
        for byte in b"GET /tracks.json HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
            slow.send(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        pass
    # closed at its head deadline, not before, and long before it could have sent its whole head (28 s)
    assert slow.recv(100) == b"" and 1.9 < time.monotonic() - t0 < 20, time.monotonic() - t0
    slow.close()

    u = urllib.parse.urlsplit(url)
    stalled = socket.create_connection((u.hostname, u.port))  # a stream that is never read
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\n" + auth + b"\r\n")
    slowest = 0.0
    try:
        with Slowloris(port, 40) as loris, stack.publishing(fps=30):
            end = time.monotonic() + 4.5  # two head timeouts: the slow ones are cut off and come back
            while time.monotonic() < end:
                t0 = time.monotonic()
                status, _, body = request(url + "snapshot.jpg", good, timeout=5)
                slowest = max(slowest, time.monotonic() - t0)
                assert status == 200 and body[:2] == b"\xff\xd8"
                time.sleep(0.2)
            assert loris.closed_by_server > 8
    finally:
        stalled.close()
    assert slowest < 2.0, f"a normal client waited {slowest:.2f} s"
    with stack.publishing(fps=10):  # a frame to write is how a stream learns that its client left
        m = stack.wait_metrics("sink-live", lambda m: m.extra.get("http_evicted", 0) > 0 and m.extra["connections"] == 0)
    assert m.extra["clients"] == 0
    assert m.extra["http_refused"] >= 9 + len(posts) and m.extra["auth_failures"] >= 1 and m.extra["http_timeouts"] >= 1, m.extra
    log = sink.log()
    assert "Traceback" not in log
    assert len(log.splitlines()) < 60, log  # counted, and logged the first time and every 100th
    assert request(url + "tracks.json", good)[0] == 200
    assert sink.stop() == 0


def test_the_watchdog_exporter_takes_the_bearer_token_and_refuses_to_open_up(stack, secrets_dir, free_port):
    """The watchdog's /metrics: the token (or the Basic credentials) when a token is set; off
    loopback with nothing to guard it, the exporter stays off with one ERROR line."""
    def watchdog(name: str, *args: str) -> tuple[subprocess.Popen, object]:
        log = open(stack.tmp / f"{name}.log", "w")
        cmd = [sys.executable, "-m", "services.watchdog", *stack.overrides, f"--set=monitor.prometheus_port={free_port}",
               *args]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}), stack.tmp / f"{name}.log"

    proc, log = watchdog("open", "--set=monitor.prometheus_host=0.0.0.0")
    try:
        wait_for(lambda: "the exporter is off" in log.read_text(), 30, what="refusal")
        assert proc.poll() is None  # the watchdog itself goes on: it guards the detector
        line = [x for x in log.read_text().splitlines() if " ERROR " in x]
        assert len(line) == 1 and "Prometheus exporter: refusing to listen on 0.0.0.0" in line[0] \
            and "http.metrics_token_file" in line[0] and "monitor.prometheus_host" in line[0], line
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    proc, log = watchdog("token", f"--set=http.metrics_token_file={secrets_dir / 'token'}",
                         f"--set=http.credentials_file={secrets_dir / 'users'}", "--set=monitor.prometheus_host=0.0.0.0")
    url = f"http://127.0.0.1:{free_port}/metrics"
    try:
        wait_for(lambda: "Prometheus metrics of every stage at" in log.read_text(), 30, what="exporter start")
        wait_for(lambda: b'facetrack_up{service="watchdog"} 1.0' in request(url, "Bearer s3cret-token")[2], 30,
                 what="the watchdog's own metrics, fetched with the token")
        status, headers, _ = request(url, basic(USER, PASSWORD))
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        for wrong in (None, "Bearer nope", basic(USER, "nope")):
            status, headers, _ = request(url, wrong)
            assert status == 401 and headers["www-authenticate"] == 'Basic realm="facetrack"'
        assert request(url.replace("/metrics", "/"), "Bearer s3cret-token")[0] == 401  # the token opens /metrics only
        assert "Traceback" not in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def match_image(shot, image) -> float:
    """How well `image` appears somewhere in the screenshot (normalised cross-correlation, best place)."""
    return cv2.minMaxLoc(cv2.matchTemplate(shot, image, cv2.TM_CCOEFF_NORMED))[1]


def test_browser_gets_401_without_credentials_and_the_stream_with_them(stack, secrets_dir, chromium_problem):  # noqa: F811
    """Headless Chromium: the page alone is refused (401; headless shows nothing, it has no dialog to
    ask); with the credentials the page's stream and tracks table load."""
    if chromium_problem:
        pytest.fail(chromium_problem)
    sink, port = guarded_sink(stack, secrets_dir, host="127.0.0.1")  # credentials set: required on loopback too
    good = basic(USER, PASSWORD)
    stack.publish_until(lambda: request(f"http://127.0.0.1:{port}/tracks.json", good)[0] == 200)
    with stack.publishing(fps=30, pos=POS):
        refused = chromium(stack.tmp, "--dump-dom", f"http://127.0.0.1:{port}/").stdout
        sink.wait_log(r"not authorised for '/'")  # Chromium was answered 401 (headless has no dialog to ask)
        # With the credentials (sent by the browser with every request: the page, its stream, its
        # script's fetches and event stream), the shot is taken once the page's script has filled
        # the tracks table (waited for, not a fixed time).
        browser = Browser(stack.tmp, size=(1000, 800))
        try:
            browser.headers({"Authorization": good})
            browser.go(f"http://127.0.0.1:{port}/")
            browser.wait("!!document.querySelector('#tracks tr .swatch')", 60, "track 1 in the page's tracks table")
            browser.wait("document.getElementById('video')?.naturalWidth", 60, "the stream on the page")
            browser.screenshot(stack.tmp / "doors-page.png")
        finally:
            browser.close()
    shot = cv2.imread(str(stack.tmp / "doors-page.png"))
    frame = stack.images[POS]
    assert 'id="video"' not in refused and "tracks.json" not in refused, refused[-500:]  # no page, no stream
    _, best, _, (_, oy) = cv2.minMaxLoc(cv2.matchTemplate(shot, frame, cv2.TM_CCOEFF_NORMED))
    assert best > 0.8, f"the stream is not on the page (best match {best:.2f})"
    below = shot[oy + frame.shape[0]:]  # the tracks table, filled by the page's script with the same credentials
    assert (colour_distance(below, track_colour(1)) < 40).sum() >= 50, "the tracks table shows no track 1"

    # Track 1's face snapshot: refused without credentials, shown with them (Chromium renders the JPEG).
    failures = stack.wait_metrics("sink-live", lambda m: "auth_failures" in m.extra).extra["auth_failures"]
    refused = chromium(stack.tmp, "--dump-dom", f"http://127.0.0.1:{port}/snapshots/1.jpg").stdout
    assert "<img" not in refused, refused[-300:]
    stack.wait_metrics("sink-live", lambda m: m.extra["auth_failures"] > failures)  # Chromium was answered 401
    status, _, jpeg = request(f"http://127.0.0.1:{port}/snapshots/1.jpg", good)
    assert status == 200
    face = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    shown = screenshot(f"http://{USER}:{urllib.parse.quote(PASSWORD)}@127.0.0.1:{port}/snapshots/1.jpg", stack.tmp)
    assert match_image(shown, face) > 0.8, f"the snapshot is not shown (best match {match_image(shown, face):.2f})"
    assert sink.stop() == 0
