"""The message bus: one XSUB/XPUB proxy per stack, PUB/SUB sockets around it.

Publishers connect to the proxy's XSUB side (`bus.publish`), subscribers to its XPUB side
(`bus.subscribe`), so no service needs to know where another one runs and sinks can come
and go while the stack runs. High-water marks are set small on purpose: PUB never blocks,
so a slow subscriber loses messages (counted by the gap in frame ids) instead of slowing
the producer or growing a queue without bound.
"""
from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from common.messages import Frame, MessageError, decode, encode

if TYPE_CHECKING:
    from common.service import StageStats

log = logging.getLogger(__name__)

MALFORMED_LOG_S = 5.0  # at most one summary line of malformed messages this often


def ensure_ipc_dir(endpoint: str) -> None:
    """ipc:// endpoints need their directory to exist before bind/connect (made 0700 when missing)."""
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def remove_stale_ipc(endpoint: str) -> None:
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).unlink(missing_ok=True)


def run_proxy(publish: str, subscribe: str, hwm: int, ctx: zmq.Context | None = None) -> None:
    """Bind both sides and forward until the context is terminated."""
    ctx = ctx or zmq.Context.instance()
    frontend = ctx.socket(zmq.XSUB)
    backend = ctx.socket(zmq.XPUB)
    frontend.setsockopt(zmq.RCVHWM, hwm)
    backend.setsockopt(zmq.SNDHWM, hwm)
    for sock, endpoint in ((frontend, publish), (backend, subscribe)):
        ensure_ipc_dir(endpoint)
        remove_stale_ipc(endpoint)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        if endpoint.startswith("ipc://"):  # who may connect may read every message: the owner only
            os.chmod(endpoint[len("ipc://"):], 0o600)
    log.info("proxy up: publish %s -> subscribe %s (hwm %d)", publish, subscribe, hwm)
    try:
        zmq.proxy(frontend, backend)
    except zmq.ContextTerminated:
        pass
    finally:
        frontend.close(0)
        backend.close(0)
        for endpoint in (publish, subscribe):
            remove_stale_ipc(endpoint)


class Publisher:
    """PUB socket connected to the proxy; `send` never blocks."""

    def __init__(self, endpoint: str, hwm: int, ctx: zmq.Context | None = None):
        ensure_ipc_dir(endpoint)
        self.sock = (ctx or zmq.Context.instance()).socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send(self, msg) -> None:
        self.sock.send_multipart(encode(msg), copy=False)

    def close(self) -> None:
        self.sock.close(0)


@dataclass(frozen=True)
class Batch:
    """What one turn of a service's loop got from the bus: every valid message, oldest first."""
    messages: list

    def of(self, cls: type) -> list:
        return [m for m in self.messages if isinstance(m, cls)]

    @property
    def newest_frame(self) -> Frame | None:
        """The frame to work on: a stage that falls behind takes the newest and skips the rest."""
        frames = self.of(Frame)
        return frames[-1] if frames else None

    @property
    def skipped_frames(self) -> int:
        """Frames older than the newest one in this batch, which the stage will never see."""
        return max(0, len(self.of(Frame)) - 1)


class Subscriber:
    """SUB socket on given topics; malformed messages are counted and logged, never raised.

    Given the stage's `stats`, its malformed count and queue depths join the stage's metrics
    (errors, queue_depth_p50/max) on their own: the services do not copy them over.
    """

    def __init__(self, endpoint: str, topics: list[bytes], hwm: int, ctx: zmq.Context | None = None,
                 stats: StageStats | None = None):
        ensure_ipc_dir(endpoint)
        self.sock = (ctx or zmq.Context.instance()).socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.malformed = 0
        # Malformed messages: every one is counted; the log gets the first at once, then at
        # most one summary line per MALFORMED_LOG_S (a flood of garbage must not flood the log).
        self._unlogged = 0
        self._last_error: MessageError | None = None
        self._next_log = 0.0
        # Queue depth: how many messages were waiting each time the loop came back for more.
        self.depths: collections.deque[int] = collections.deque(maxlen=256)
        if stats is not None:
            stats.watch(self)

    def batch(self, timeout_ms: int) -> Batch:
        """Wait up to `timeout_ms` for a message, then take every one already queued: one loop turn."""
        first = self.recv(timeout_ms=timeout_ms)
        return Batch([first, *self.drain()] if first is not None else [])

    def recv(self, timeout_ms: int | None = None):
        """The next valid message, or None when `timeout_ms` passes without one."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        self._report()
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self.poller.poll(wait):
                return None
            msg = self._decode(self.sock.recv_multipart())
            if msg is not None:
                return msg
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def drain(self) -> list:
        """Every valid message already queued, oldest first, without waiting."""
        out: list = []
        waiting = 0
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self.depths.append(waiting)
                return out
            waiting += 1
            msg = self._decode(parts)
            if msg is not None:
                out.append(msg)

    def _decode(self, parts):
        try:
            return decode(parts)
        except MessageError as exc:
            self.malformed += 1
            self._unlogged += 1
            self._last_error = exc
            self._report()
            return None

    def _report(self) -> None:
        """Log what was dropped since the last line, if it is time to."""
        if not self._unlogged or time.monotonic() < self._next_log:
            return
        if self._unlogged == 1:
            log.warning("dropped malformed message #%d: %s", self.malformed, self._last_error)
        else:
            log.warning("dropped %d more malformed messages (%d in all); the latest: %s",
                        self._unlogged, self.malformed, self._last_error)
        self._unlogged = 0
        self._next_log = time.monotonic() + MALFORMED_LOG_S

    def queue_stats(self) -> dict[str, float]:
        """Messages found waiting per loop (median and max of the recent loops), for metrics."""
        if not self.depths:
            return {"queue_depth_p50": 0.0, "queue_depth_max": 0.0}
        ordered = sorted(self.depths)
        return {"queue_depth_p50": float(ordered[len(ordered) // 2]), "queue_depth_max": float(ordered[-1])}

    def close(self) -> None:
        self.sock.close(0)
