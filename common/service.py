"""What every service process shares: start-up, logging, stop signals and metrics.

`run_service("tracker", main)` parses `--config/--set`, loads and validates the config
(a bad one stops the process with one line naming the key, exit code 2), logs one line per
event with the service name, turns SIGTERM/SIGINT into a clean stop, and hands `main` a
`ServiceContext` with the config, a publisher and a metrics reporter. What a service creates
is its user's only (umask 077, the run directory 0700: common/permissions.py).
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import psutil

from common.board import read_health
from common.bus import Publisher
from common.config import Config, ConfigError, load_config
from common.heap import release_free_heap
from common.messages import Latency, Metrics
from common.permissions import PRIVATE_UMASK, private_dir
from common.threads import limit_threads, service_threads

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_INPUT = 3  # a missing source, model file or ring: a one-line error, not a traceback


class InputError(Exception):
    """A problem with what a service was given (source, model, ring), worded as one line."""


def setup_logging(service: str) -> None:
    logging.basicConfig(
        level=os.environ.get("FACETRACK_LOG", "INFO").upper(),
        format=f"%(asctime)s {service}[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


class StageStats:
    """Counters and a window of processing times for one service's metrics."""

    def __init__(self, window: int = 512):
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.errors = 0
        self.times_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.extra: dict[str, float] = {}
        self._out_times: collections.deque[float] = collections.deque(maxlen=window)
        self._window = window
        self._latencies: dict[str, collections.deque[float]] = {}
        self._buses: list = []  # common.bus.Subscriber: malformed messages and queue depth

    def watch(self, subscriber) -> None:
        """Count `subscriber`'s malformed messages as errors and report its queue depth."""
        self._buses.append(subscriber)

    def bus_errors(self) -> int:
        return sum(bus.malformed for bus in self._buses)

    def bus_extra(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for bus in self._buses:
            for key, value in bus.queue_stats().items():
                out[key] = max(out.get(key, 0.0), value)
        return out

    def processed(self, ms: float) -> None:
        self.frames_out += 1
        self.times_ms.append(ms)
        self._out_times.append(time.monotonic())

    def latency(self, name: str, seconds: float) -> None:
        """One frame's latency between two points of the pipeline (wall-clock seconds).

        Published in the metrics' `latency_ms` map under `name`, e.g. `capture_to_tracked`
        from Frame.t_capture to Tracks.t_tracked.
        """
        window = self._latencies.get(name)
        if window is None:
            window = self._latencies[name] = collections.deque(maxlen=self._window)
        window.append(seconds * 1000)

    def latencies(self) -> dict[str, Latency]:
        out = {}
        for name, window in self._latencies.items():
            if window:
                p50, p99 = np.percentile(np.fromiter(window, float), [50, 99])
                out[name] = Latency(float(p50), float(p99))
        return out

    def fps(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._out_times if now - t <= 2.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def percentiles(self) -> tuple[float, float]:
        if not self.times_ms:
            return 0.0, 0.0
        arr = np.fromiter(self.times_ms, float)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


class Sender(Protocol):
    """Where Metrics go: the bus's Publisher, or the remote detector's channel to the board."""

    def send(self, msg) -> None: ...


def supervisor_program() -> str:
    """The supervisord program this process runs as, named as supervisorctl names it; "" outside it."""
    name, group = os.environ.get("SUPERVISOR_PROCESS_NAME", ""), os.environ.get("SUPERVISOR_GROUP_NAME", "")
    return f"{group}:{name}" if name and group and group != name else name


class MetricsReporter:
    """Publishes the stage's Metrics once per period; call `tick()` from the main loop."""

    def __init__(self, service: str, publisher: Sender, stats: StageStats, period_s: float,
                 release_heap_s: float = 0.0):
        self.service = service
        self.publisher = publisher
        self.stats = stats
        self.period_s = period_s
        self.release_heap_s = release_heap_s
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)
        self.program = supervisor_program()
        self._next = time.monotonic() + period_s
        self._next_release = time.monotonic() + release_heap_s

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.period_s
        if self.release_heap_s and now >= self._next_release:  # before RSS is read
            self._next_release = now + self.release_heap_s
            release_free_heap()
        self.publisher.send(self.snapshot())

    def snapshot(self) -> Metrics:
        p50, p99 = self.stats.percentiles()
        return Metrics(
            service=self.service, pid=os.getpid(), t=time.time(),
            frames_in=self.stats.frames_in, frames_out=self.stats.frames_out,
            fps=self.stats.fps(), p50_ms=p50, p99_ms=p99, dropped=self.stats.dropped,
            errors=self.stats.errors + self.stats.bus_errors(), cpu_percent=self.proc.cpu_percent(None),
            rss_bytes=self.proc.memory_info().rss,
            extra={**self.stats.extra, **self.stats.bus_extra(), **read_health()}, latency_ms=self.stats.latencies(),
            program=self.program,
        )


@dataclass
class ServiceContext:
    name: str
    config: Config
    args: argparse.Namespace
    stop: threading.Event = field(default_factory=threading.Event)
    stats: StageStats = field(default_factory=StageStats)
    _publisher: Publisher | None = None
    _metrics: MetricsReporter | None = None

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(self.config.bus.publish, self.config.bus.hwm)
        return self._publisher

    @property
    def metrics(self) -> MetricsReporter:
        if self._metrics is None:
            self._metrics = MetricsReporter(self.name, self.publisher, self.stats,
                                            self.config.monitor.interval_s, self.config.monitor.release_heap_s)
        return self._metrics


def run_service(name: str, main, argv: list[str] | None = None, add_args=None) -> int:
    """Run `main(ctx)` as service `name`; returns the process exit code."""
    os.umask(PRIVATE_UMASK)  # sockets, records, rings, directories: owner only, whoever started it
    setup_logging(name)
    parser = argparse.ArgumentParser(prog=f"facetrack-{name}")
    parser.add_argument("--config", help="stack config (default: $FACETRACK_CONFIG or configs/default.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable)")
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.set)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    limit_threads(service_threads(name, config))
    try:
        private_dir(config.run_dir)
    except OSError as exc:
        log.error("stack.run_dir %s: cannot make it private (%s)", config.run_dir, exc.strerror)
        return EXIT_CONFIG
    ctx = ServiceContext(name=name, config=config, args=args)

    def _stop(signum, _frame):
        log.info("stopping on %s", signal.Signals(signum).name)
        ctx.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("starting (stack %s, config %s)", config.stack.id, config.source_path)
    try:
        main(ctx)
    except (InputError, ConfigError) as exc:
        log.error("%s", exc)
        return EXIT_INPUT if isinstance(exc, InputError) else EXIT_CONFIG
    finally:
        if ctx._publisher is not None:
            ctx._publisher.close()
    log.info("stopped")
    return 0
