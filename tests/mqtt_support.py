"""A real mosquitto for tests, and an MQTT client that records what arrives.

`Mosquitto` runs the Debian `mosquitto` binary (the Makefile's apt list installs it) on a free
loopback port with a config of its own in a temporary directory, persistence on, so it can be
stopped and started again on the same port mid-test with the sessions of persistent clients
kept (as a broker restart in the field would). `Collector` subscribes with a persistent
session (clean_session false, QoS 1), so what is published while it is reconnecting after a
broker restart is queued for it by the broker instead of being lost to the test.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

_ids = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Certs:
    """A test CA and the server certificates it signs (openssl, in `directory`)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = self.dir / "ca.crt", self.dir / "ca.key"
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca,
                      "-days", "2", "-subj", "/CN=facetrack test CA")

    def _openssl(self, *args) -> None:
        subprocess.run([shutil.which("openssl") or "/usr/bin/openssl", *map(str, args)], check=True,
                       capture_output=True)

    def server(self, name: str, san: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path, Path]:
        """(CA, certificate, key) of a server certificate for `san`, signed by the CA."""
        key, csr, cert, ext = (self.dir / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
        ext.write_text(f"subjectAltName={san}\n")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-out", cert, "-days", "2", "-extfile", ext)
        return self.ca, cert, key

    def client(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of a client certificate signed by the CA."""
        key, csr, cert = (self.dir / f"{name}.{suffix}" for suffix in ("key", "csr", "crt"))
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-out", cert, "-days", "2")
        return cert, key


class Mosquitto:
    def __init__(self, directory: Path, port: int | None = None, users: dict[str, str] | None = None,
                 acl: str | None = None, tls: tuple[Path, Path, Path] | None = None,
                 require_certificate: bool = False):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        assert Path(binary).exists(), "mosquitto is missing: `make apt` installs it (Debian package mosquitto)"
        self.binary = binary
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.passwords = self.dir / "passwords"
        self.conf = self.dir / "mosquitto.conf"
        lines = ["user root",  # run as root (tests are): else mosquitto drops to `mosquitto`, who cannot read tmp
                 f"listener {self.port} 127.0.0.1"]
        if tls:
            ca, cert, key = tls
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {ca}", f"certfile {cert}", f"keyfile {key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]
        if users:
            for user, password in users.items():
                self.set_password(user, password)
            lines += ["allow_anonymous false", f"password_file {self.passwords}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            lines.append(f"acl_file {self.dir / 'acl'}")
        self.conf.write_text("\n".join(lines) + "\n" +
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "log_dest stderr\n"
            "max_queued_messages 100000\n")
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def set_password(self, user: str, password: str) -> None:
        """Add or change a user in the password file (`reload()` makes a running broker read it)."""
        create = [] if self.passwords.exists() else ["-c"]
        subprocess.run(["mosquitto_passwd", *create, "-b", str(self.passwords), user, password], check=True,
                       capture_output=True)

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its password and ACL files again."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=self._log, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"mosquitto exited: {self.log()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto not listening on {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class Collector:
    """Subscribes to `topic` and keeps (topic, payload dict, arrival time, retained) in `messages`."""

    def __init__(self, port: int, topic: str = "facetrack/#", persistent: bool = True,
                 auth: tuple[str, str] | None = None):
        self.messages: list[tuple[str, dict | bytes | None, float, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{next(_ids)}-{port}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.connected.wait(10), "collector could not connect to mosquitto"

    def _on_connect(self, client, _u, _flags, reason, _p):
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, _c, _u, msg):
        with self.lock:
            try:  # None: an empty (clearing) message; bytes: not JSON (a JPEG snapshot)
                payload = json.loads(msg.payload) if msg.payload else None
            except ValueError:
                payload = bytes(msg.payload)
            self.messages.append((msg.topic, payload, time.time(), bool(msg.retain)))

    def select(self, suffix: str, stack: str | None = None) -> list[dict]:
        """JSON payloads of topics containing `suffix` (of `stack`, when given)."""
        with self.lock:
            return [p for t, p, _, _ in self.messages
                    if suffix in t and isinstance(p, dict) and (stack is None or p.get("stack") == stack)]

    def raw(self, topic: str) -> list[tuple[bytes, bool]]:
        """(payload, retained) of every non-JSON message on exactly `topic`."""
        with self.lock:
            return [(p, r) for t, p, _, r in self.messages if t == topic and isinstance(p, bytes)]

    def latest(self) -> dict[str, dict | bytes | None]:
        """Topic -> its newest payload (None once cleared by an empty message)."""
        with self.lock:
            return {t: p for t, p, _, _ in self.messages}

    def timed(self, suffix: str) -> list[tuple[dict, float]]:
        with self.lock:
            return [(p, at) for t, p, at, _ in self.messages if suffix in t and isinstance(p, dict)]

    def wait(self, pred, timeout: float = 15.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.05)
        with self.lock:
            tail = self.messages[-10:]
        raise AssertionError(f"MQTT: {what} not met in {timeout} s; last messages: {tail}")

    def statuses(self, stack: str) -> list[str]:
        return [p["state"] for p in self.select("/status", stack)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
