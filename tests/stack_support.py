"""Helpers for tests of whole stacks under real supervisord (facetrack.stack.Stack)."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from common.bus import Subscriber
from common.messages import Metrics
from facetrack.stack import Stack

PIPELINE = ("broker", "capture", "detector", "tracker", "sink", "watchdog")


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """The first truthy value of predicate(), or AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not met after {timeout} s")


def get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line]


class MetricsWatch:
    """Every Metrics message of a stack, newest per service (and per pid)."""

    def __init__(self, stack: Stack):
        self.sub = Subscriber(stack.config.bus.subscribe, [Metrics.TOPIC], hwm=100000)
        self.latest: dict[str, Metrics] = {}

    def poll(self) -> dict[str, Metrics]:
        for msg in self.sub.drain():
            self.latest[msg.service] = msg
        return self.latest

    def get(self, service: str) -> Metrics | None:
        return self.poll().get(service)

    def wait(self, service: str, pred, timeout: float = 60.0) -> Metrics:
        def check():
            m = self.get(service)
            return m if m is not None and pred(m) else None
        return wait_for(check, timeout, what=f"metrics of {service}")

    def close(self) -> None:
        self.sub.close()


def leftovers(stack: Stack, shm_dirs=("/dev/shm",)) -> list[str]:
    """Shared-memory segments and ipc sockets of this stack still on disk."""
    found = [str(p) for d in shm_dirs for p in Path(d).glob(f"facetrack-{stack.config.stack.id}*")]
    found += [str(p) for p in stack.run_dir.rglob("*.sock")]
    return found


def pids(stack: Stack) -> dict[str, int]:
    return {name: pid for name, (state, pid) in stack.status().items() if state == "RUNNING" and pid}


def unique_id(prefix: str, tmp: Path) -> str:
    return f"{prefix}{os.getpid()}{abs(hash(str(tmp))) % 10000}"
