"""CURVE on the remote-detector link: key files, which detectors the board serves, when plain is allowed.

The link between the board's frame forwarder (a ZMQ ROUTER, the CURVE server) and each remote
detector (a DEALER, a CURVE client) carries live video of faces. With keys, ZeroMQ's CURVE
(CurveZMQ: Curve25519 key exchange, every message encrypted and authenticated) protects it: the
detector knows the board by the board's public key, and the board serves only the detectors whose
public keys are in `detector.remote_authorized_dir`; its ZAP handler (pyzmq's ThreadAuthenticator)
refuses any other key during the handshake, so an unknown client never gets a frame.

Key files are zmq.auth's certificates: NAME.key (public, goes to the other side) and
NAME.key_secret (secret, stays on its host, mode 0600), made by `facetrack keys new NAME`.
Without keys the link is plain: allowed only on a loopback endpoint, or anywhere with
`detector.remote_insecure: true`; otherwise the service refuses to start with one line.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import stat
import threading
import time
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from common.config import ROOT, DetectorConfig
from common.service import InputError

log = logging.getLogger(__name__)

ZAP_DOMAIN = "facetrack"
RELOAD_CHECK_S = 1.0  # how often the authorized directory is looked at (a stat per file)
HINT = "make keys with `facetrack keys new NAME --dir DIR` (docs/security.md)"


def key_path(path: str) -> Path:
    """A configured key path; a relative one is taken from the checkout, like detector.model_dir."""
    return Path(path) if Path(path).is_absolute() else ROOT / path


def is_loopback(endpoint: str) -> bool:
    """tcp://127.0.0.1:PORT, tcp://localhost:PORT, tcp://[::1]:PORT: reachable from this host only."""
    host = endpoint.removeprefix("tcp://").rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_secret(path: str, key: str) -> tuple[bytes, bytes]:
    """(public, secret) of a NAME.key_secret file named by config `key`; refused if others may read it."""
    file = key_path(path)
    try:
        mode = file.stat().st_mode
        public, secret = zmq.auth.load_certificate(file)
    except (OSError, ValueError) as exc:
        raise InputError(f"{key} {file}: not a readable key file ({exc}); {HINT}") from None
    if secret is None:
        raise InputError(f"{key} {file}: holds no secret key (give NAME.key_secret, not NAME.key)")
    if mode & 0o077:
        raise InputError(f"{key} {file}: secret key readable by others (mode {stat.S_IMODE(mode):04o}); "
                         f"chmod 600 {file}")
    return public, secret


def load_public(path: str, key: str) -> bytes:
    file = key_path(path)
    try:
        return zmq.auth.load_certificate(file)[0]
    except (OSError, ValueError) as exc:
        raise InputError(f"{key} {file}: not a readable key file ({exc})") from None


def refuse_plain(det: DetectorConfig, endpoint: str) -> None:
    """Plain (no keys) only on loopback or by explicit choice: else one line saying how to make keys."""
    if is_loopback(endpoint):
        return
    if det.remote_insecure:
        log.warning("remote detector link %s is NOT encrypted (detector.remote_insecure: true): "
                    "anyone who can reach it sees the frames", endpoint)
        return
    raise InputError(f"{endpoint} is not a loopback endpoint and detector.remote_key is empty: frames would "
                     f"cross the network in the clear; {HINT}, or set detector.remote_insecure: true")


class AuthorizedKeys:
    """The public keys in the board's authorized directory (NAME.key files), reloaded when it changes.

    Thread-safe: the ZAP thread asks at every handshake, the forwarder's loop before serving a
    request (so a key removed from the directory stops getting frames at once, even on a
    connection made before). A file that is not a key is logged once and skipped.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._keys: dict[bytes, str] = {}  # z85 public key -> file name
        self._stamp: tuple | None = None
        self._next = 0.0
        self._bad: set[tuple] = set()
        if not directory.is_dir():
            raise InputError(f"detector.remote_authorized_dir {directory}: no such directory (put each "
                             "detector's NAME.key there)")
        self._reload_if_changed()

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("*.key"))

    def _reload_if_changed(self) -> None:
        try:
            files = self._files()
            stamp: tuple = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        except OSError as exc:
            stamp = ("unreadable", str(exc))
            files = []
        if stamp == self._stamp:
            return
        keys: dict[bytes, str] = {}
        for file in files:
            try:
                keys[zmq.auth.load_certificate(file)[0]] = file.name
            except (OSError, ValueError) as exc:
                mark = (file.name, stamp)
                if mark not in self._bad:
                    self._bad.add(mark)
                    log.warning("authorized detector key %s: skipped, not a key file (%s)", file, exc)
        self._stamp, self._keys = stamp, keys
        if keys:
            log.info("serving %d remote detector key(s) of %s: %s", len(keys), self.directory,
                     ", ".join(sorted(keys.values())))
        else:
            log.warning("no remote detector keys in %s: every detector is refused until one's NAME.key is put there",
                        self.directory)

    def name_of(self, key: bytes) -> str | None:
        """The key file of a z85 public key, or None when the directory does not list it."""
        with self._lock:
            if time.monotonic() >= self._next:
                self._next = time.monotonic() + RELOAD_CHECK_S
                self._reload_if_changed()
            return self._keys.get(key)


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, remembering the address of the request being decided (for the log)."""

    address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)


class DetectorGate:
    """The board's ZAP policy: CURVE clients whose key is authorized; each unknown key logged once.

    The credentials provider of `configure_curve_callback`. `denied` counts refused handshakes
    (a client whose key was refused is not reconnected by ZeroMQ; a remote detector retries
    every few seconds, so the count grows slowly, the log by one line per key).
    """

    def __init__(self, context: zmq.Context, keys: AuthorizedKeys):
        self.keys = keys
        self.denied = 0
        self._logged: set[bytes] = set()
        self._auth = _Authenticator(context, log=logging.getLogger("zmq.auth"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            name = self.keys.name_of(key)
        except Exception:  # the ZAP thread must not die: without it every handshake fails
            log.exception("authorized detector keys: cannot check")
            name = None
        if name is not None:
            log.debug("remote detector %s (%s) from %s: allowed", name, key.decode(), self._auth.address)
            return True
        self.denied += 1
        if key not in self._logged:
            self._logged.add(key)
            log.warning("refused a remote detector from %s: its key %s is not in %s (put its NAME.key there "
                        "to serve it); further attempts with this key are counted, not logged (remote_denied)",
                        self._auth.address or "?", key.decode(), self.keys.directory)
        return False

    def alive(self) -> bool:
        return self._auth.is_alive()

    def stop(self) -> None:
        self._auth.stop()


def serve_securely(sock: zmq.Socket, det: DetectorConfig) -> DetectorGate | None:
    """Make the forwarder's ROUTER a CURVE server (before bind); None when the link is plain."""
    if not det.remote_key:
        refuse_plain(det, det.remote)
        return None
    if not det.remote_authorized_dir:
        raise InputError("detector.remote_authorized_dir is empty: with detector.remote_key set, the board "
                         "serves only the detector keys (NAME.key files) in that directory")
    public, secret = load_secret(det.remote_key, "detector.remote_key")
    gate = DetectorGate(sock.context, AuthorizedKeys(key_path(det.remote_authorized_dir)))
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP handler (its thread gone): refuse, never accept all
    return gate


def connect_securely(sock: zmq.Socket, det: DetectorConfig, endpoint: str) -> bytes | None:
    """Make the remote detector's DEALER a CURVE client of the board (before connect); its public key, or None."""
    if not det.remote_key:
        refuse_plain(det, endpoint)
        return None
    if not det.remote_board_key:
        raise InputError("detector.remote_board_key is empty: with detector.remote_key set, the detector needs "
                         "the board's public key (the board's NAME.key) to know it")
    public, secret = load_secret(det.remote_key, "detector.remote_key")
    sock.curve_serverkey = load_public(det.remote_board_key, "detector.remote_board_key")
    sock.curve_publickey, sock.curve_secretkey = public, secret
    return public


def create_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """NAME.key (0644) and NAME.key_secret (0600) in `directory` (made 0700 if missing); existing files are kept."""
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for file in (public, secret):
        if file.exists():
            raise FileExistsError(f"{file} exists: remove it first to make a new key (its peers must get the new one)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret is never readable by others, not even for a moment
    try:
        made = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(made[1], 0o600)
    os.chmod(made[0], 0o644)
    return Path(made[0]), Path(made[1])
