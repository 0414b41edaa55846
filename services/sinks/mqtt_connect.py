"""Credentials and TLS of an MQTT connection, from the [mqtt] config; used by the sink and the CLIs.

The password is never in the YAML: it is read from `mqtt.password_file` (its first line), or,
when no file is named, from $FACETRACK_MQTT_PASSWORD. The file is read again before every
connection attempt (paho's on_pre_connect), so an operator who fixes it needs no restart.
`mqtt.tls_ca` turns TLS on (paho's tls_set, CERT_REQUIRED; the broker's hostname is always
checked against its certificate: there is no switch to turn that off). A missing or unreadable
file raises OSError naming the key and the file, which a service reports as one start error.
"""
from __future__ import annotations

import logging
import os
import ssl

import paho.mqtt.client as mqtt

from common.config import MqttConfig

log = logging.getLogger("sink.mqtt")

PASSWORD_ENV = "FACETRACK_MQTT_PASSWORD"


def _readable(key: str, path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as exc:
        raise OSError(f"mqtt.{key} {path}: cannot read ({exc.strerror})") from None


def read_password(cfg: MqttConfig) -> str | None:
    """The password: the first line of mqtt.password_file, else $FACETRACK_MQTT_PASSWORD, else None."""
    if cfg.password_file:
        lines = _readable("password_file", cfg.password_file).splitlines()
        return lines[0] if lines else ""
    return os.environ.get(PASSWORD_ENV)


def secure(client: mqtt.Client, cfg: MqttConfig) -> None:
    """Set the user name, password and TLS of `client` from `cfg`; OSError names a bad file."""
    if cfg.password_file and not cfg.username:
        raise OSError(f"mqtt.password_file {cfg.password_file} is set but mqtt.username is empty: set both")
    if cfg.tls_key and not cfg.tls_cert:
        raise OSError(f"mqtt.tls_key {cfg.tls_key} is set but mqtt.tls_cert is empty: set both")
    if cfg.username:
        client.username_pw_set(cfg.username, read_password(cfg))
        if cfg.password_file:
            client.on_pre_connect = _PasswordRefresh(cfg)
    if cfg.tls_ca:
        for key in ("tls_ca", "tls_cert", "tls_key"):
            if getattr(cfg, key):
                _readable(key, getattr(cfg, key))
        try:
            client.tls_set(ca_certs=cfg.tls_ca, certfile=cfg.tls_cert or None, keyfile=cfg.tls_key or None,
                           cert_reqs=ssl.CERT_REQUIRED)
        except ssl.SSLError as exc:
            raise OSError(f"mqtt.tls_ca/tls_cert/tls_key ({cfg.tls_ca}, {cfg.tls_cert or '-'}, "
                          f"{cfg.tls_key or '-'}): not usable ({exc.reason or exc})") from None
    elif cfg.tls_cert or cfg.tls_key:
        raise OSError("mqtt.tls_cert/tls_key are set but mqtt.tls_ca is not: set tls_ca to turn TLS on")


class _PasswordRefresh:
    """paho's on_pre_connect: read the password file again before each attempt; keep the last good one."""

    def __init__(self, cfg: MqttConfig):
        self.cfg = cfg
        self.failing: str | None = None

    def __call__(self, client: mqtt.Client, _userdata) -> None:
        try:
            password = read_password(self.cfg)
        except OSError as exc:
            if str(exc) != self.failing:
                log.error("%s: connecting with the password read before", exc)
            self.failing = str(exc)
            return
        self.failing = None
        client.username_pw_set(self.cfg.username, password)
