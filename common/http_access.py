"""Who may use an HTTP server of the stack: HTTP Basic credentials and a bearer token for /metrics.

    python -m common.http_access hash USER    prints a `USER:$scrypt$...` line for http.credentials_file

Credentials come from `http.credentials_file` (lines `user:password`, or `user:$scrypt$...`
as printed above; `#` comments and blank lines skipped) and from the environment:
FACETRACK_HTTP_USER with FACETRACK_HTTP_PASSWORD, or with FACETRACK_HTTP_PASSWORD_FILE (a
file holding the password: the Docker/Grafana `__FILE` convention). `http.metrics_token_file`
holds a token that /metrics accepts as `Authorization: Bearer <token>` (Prometheus'
`bearer_token_file`); /metrics accepts the Basic credentials too.

Rules, per server: bound to loopback with no credentials, it is open (the default); bound to
any other address with none, it refuses to start (`refuse_open`); with credentials, every
route but the open ones (/healthz) needs them. Checks compare in constant time: the user
and the password of every entry are compared, with no early exit. A scrypt hash costs tens
of milliseconds, so a header that verified is remembered (by its SHA-256) and unknown headers
are verified one at a time.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from common.config import HttpConfig
from common.service import InputError

log = logging.getLogger("http.access")

ENV_USER, ENV_PASSWORD, ENV_PASSWORD_FILE = "FACETRACK_HTTP_USER", "FACETRACK_HTTP_PASSWORD", "FACETRACK_HTTP_PASSWORD_FILE"
HOW_TO_SET = (f"set http.credentials_file (lines user:password) or {ENV_USER} with {ENV_PASSWORD} "
              f"(or {ENV_PASSWORD_FILE})")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1  # 16 MiB, ~50 ms on a desktop core
MAX_REMEMBERED = 64  # verified Authorization headers kept


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def hash_password(password: str) -> str:
    """`$scrypt$n=..,r=..,p=..$salt$hash` (base64), the hashed form of a credentials file line."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"$scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${b64(salt)}${b64(key)}"


@dataclass(frozen=True)
class Entry:
    """One user: the SHA-256 of the name and either the password's SHA-256 or its scrypt hash."""
    user: bytes
    plain: bytes | None = None
    scrypt: tuple[int, int, int, bytes, bytes] | None = None  # n, r, p, salt, key

    @classmethod
    def parse(cls, user: str, secret: str) -> Entry:
        if not secret.startswith("$scrypt$"):
            return cls(_digest(user), plain=_digest(secret))
        _, _, params, salt, key = secret.split("$")
        n, r, p = (int(kv.split("=", 1)[1]) for kv in params.split(","))
        return cls(_digest(user), scrypt=(n, r, p, base64.b64decode(salt, validate=True),
                                          base64.b64decode(key, validate=True)))

    def matches(self, user: str, password: str) -> bool:
        user_ok = hmac.compare_digest(self.user, _digest(user))
        if self.scrypt is None:
            assert self.plain is not None  # parse() sets one of the two
            password_ok = hmac.compare_digest(self.plain, _digest(password))
        else:
            n, r, p, salt, key = self.scrypt
            got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2 ** 20, dklen=len(key))
            password_ok = hmac.compare_digest(key, got)
        return user_ok & password_ok


def _read_secret_file(path: str, key: str) -> str:
    """The text of a file holding a secret; one line naming `key` and the file if unreadable; a
    warning when group or others may read it."""
    try:
        text = Path(path).read_text()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{key} {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s %s is readable by group or others (mode %o): chmod 600 it", key, path, stat.S_IMODE(mode))
    return text


def load_entries(cfg: HttpConfig, environ=os.environ) -> list[Entry]:
    """The configured users, from http.credentials_file and the environment."""
    entries = []
    if cfg.credentials_file:
        for number, line in enumerate(_read_secret_file(cfg.credentials_file, "http.credentials_file").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, secret = line.partition(":")
            try:
                if not (sep and user and secret):
                    raise ValueError
                entries.append(Entry.parse(user, secret))
            except ValueError:
                raise InputError(f"http.credentials_file {cfg.credentials_file} line {number}: expected user:password "
                                 "or user:$scrypt$... (python -m common.http_access hash USER)") from None
    user = environ.get(ENV_USER, "")
    password = environ.get(ENV_PASSWORD, "")
    if environ.get(ENV_PASSWORD_FILE):
        password = _read_secret_file(environ[ENV_PASSWORD_FILE], ENV_PASSWORD_FILE).strip()
    if bool(user) != bool(password):
        raise InputError(f"{ENV_USER} and {ENV_PASSWORD} (or {ENV_PASSWORD_FILE}) must be set together")
    if user:
        entries.append(Entry.parse(user, password))
    return entries


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or "" (every interface): not known to stay on this machine


class Access:
    """Decides one request: open, Basic credentials, or the bearer token on the metrics path."""

    def __init__(self, entries: list[Entry], token: str | None, open_paths=("/healthz",), metrics_path="/metrics"):
        self.entries, self.token = entries, token
        self.open_paths, self.metrics_path = frozenset(open_paths), metrics_path
        self._remembered: set[bytes] = set()
        self._verify = threading.Lock()  # one scrypt at a time: a flood of wrong passwords costs one core at most

    @classmethod
    def from_config(cls, cfg: HttpConfig, host: str, port: int, what: str, host_key: str,
                    needs_credentials: bool = True, **kwargs) -> Access:
        """Load the credentials; raise InputError (one line, naming `what` and the config key that
        binds it) when `host` is not loopback and nothing guards the server. A server that serves
        only /metrics (`needs_credentials=False`) may be guarded by the token alone."""
        entries = load_entries(cfg)
        token = None
        if cfg.metrics_token_file:
            token = _read_secret_file(cfg.metrics_token_file, "http.metrics_token_file").strip()
            if not token:
                raise InputError(f"http.metrics_token_file {cfg.metrics_token_file}: the file is empty")
        guarded = bool(entries) or (token is not None and not needs_credentials)
        if not guarded and not is_loopback(host):
            how = HOW_TO_SET if needs_credentials else f"set http.metrics_token_file, or {HOW_TO_SET[4:]}"
            raise InputError(f"{what}: refusing to listen on {host or '*'}:{port} without credentials: "
                             f"{how}, or set {host_key} to 127.0.0.1")
        return cls(entries, token, **kwargs)

    @property
    def guarded(self) -> bool:
        return bool(self.entries) or self.token is not None

    def allows(self, path: str, authorization: str | None) -> bool:
        path = path.split("?", 1)[0]
        if path in self.open_paths:
            return True
        token_ok = path == self.metrics_path and self.token is not None
        if not self.entries and not token_ok:
            return True  # nothing configured for this route (loopback only: from_config refused the rest)
        scheme, _, value = (authorization or "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and token_ok:
            assert self.token is not None  # token_ok says so
            return hmac.compare_digest(_digest(self.token), _digest(value))
        if scheme == "basic" and self.entries:
            return self._basic(value)
        return False

    def _basic(self, value: str) -> bool:
        seen = _digest(value)
        if seen in self._remembered:
            return True
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not sep:
            return False
        with self._verify:
            ok = False
            for entry in self.entries:
                ok |= entry.matches(user, password)
            if ok:
                if len(self._remembered) >= MAX_REMEMBERED:
                    self._remembered.clear()
                self._remembered.add(seen)
        return ok


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "hash" or ":" in argv[1]:
        print("usage: python -m common.http_access hash USER   (reads the password from the terminal or stdin)",
              file=sys.stderr)
        return 2
    password = getpass.getpass() if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 2
    print(f"{argv[1]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
