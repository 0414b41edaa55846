"""Every stage's newest Metrics as Prometheus metrics (prometheus_client), in one place.

The watchdog, which watches every stage anyway, serves them on `monitor.prometheus_host:
monitor.prometheus_port` (`/metrics`), whether or not a viewer is attached; the live view
serves the same at its own `/metrics`. Families (label `service` = the stage):

  facetrack_up                      1 while the stage's metrics are fresh (younger than
                                    watchdog.silent_periods monitor periods, the watchdog's rule)
  facetrack_metrics_age_seconds     age of the newest metrics message
  facetrack_frames_in_total / facetrack_frames_out_total / facetrack_dropped_total /
  facetrack_errors_total            the stage's counters (reset when the process restarts)
  facetrack_fps, facetrack_cpu_percent, facetrack_rss_bytes, facetrack_process_id
  facetrack_stage_ms{quantile}      processing time per frame, p50 and p99
  facetrack_latency_ms{path,quantile}  per-frame latency between two pipeline points
                                    (Metrics.latency_ms, e.g. path="capture_to_tracked")
  facetrack_extra{key}              every other extra value (queue depth, skipped ...)
  facetrack_board_temperature_celsius, facetrack_board_cpu_frequency_hertz,
  facetrack_board_throttled_flags   board health as the stage's host reads it (common/board.py):
                                    SoC temperature, fastest core's clock, get_throttled's raw bits
  facetrack_board_throttle{flag}    1/0 per get_throttled bit (undervoltage, freq_capped, throttled,
                                    soft_temp_limit, and each *_occurred since boot)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from common.board import THROTTLE_BITS
from common.messages import Metrics

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
MAX_SERVICES = 64  # a forged stream of service names must not grow the table without bound

_COUNTERS = (
    ("frames_in", "Frames (or messages) the stage took in.", lambda m: m.frames_in),
    ("frames_out", "Frames the stage finished.", lambda m: m.frames_out),
    ("dropped", "Frames the stage dropped (skipped, overwritten, lost).", lambda m: m.dropped),
    ("errors", "Malformed messages and failed frames.", lambda m: m.errors),
)
_GAUGES = (
    ("fps", "Frames finished per second (last 2 s).", lambda m: m.fps),
    ("cpu_percent", "CPU use of the stage's process (100 = one core).", lambda m: m.cpu_percent),
    ("rss_bytes", "Resident memory of the stage's process.", lambda m: m.rss_bytes),
    ("process_id", "PID of the stage's process.", lambda m: m.pid),
)


_BOARD = (
    ("temp_c", "facetrack_board_temperature_celsius", "SoC temperature of the stage's host (hottest zone).", 1.0),
    ("cpu_mhz", "facetrack_board_cpu_frequency_hertz", "CPU clock of the stage's host now (fastest core).", 1e6),
    ("throttled_flags", "facetrack_board_throttled_flags", "The Pi firmware's get_throttled bits on the stage's host.",
     1.0),
)
BOARD_KEYS = frozenset([key for key, *_ in _BOARD] + list(THROTTLE_BITS.values()))


class StackMetrics:
    """The newest Metrics per service, collected by prometheus_client on each scrape.

    A stage is up while its newest metrics are younger than `silent_periods` periods: the
    watchdog calls such a stage silent (watchdog.silent_periods).
    """

    def __init__(self, period_s: float, silent_periods: int):
        self.fresh_s = period_s * silent_periods
        self.latest: dict[str, Metrics] = {}
        self.received: dict[str, float] = {}
        self._lock = threading.Lock()  # updated by the bus loop, collected by HTTP threads
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def update(self, msg: Metrics) -> None:
        with self._lock:
            self.latest.pop(msg.service, None)  # re-insert: dict order is then oldest-updated first
            self.latest[msg.service] = msg
            self.received[msg.service] = time.time()
            while len(self.latest) > MAX_SERVICES:
                oldest = next(iter(self.latest))
                del self.latest[oldest]
                self.received.pop(oldest, None)

    def newest(self) -> tuple[dict[str, Metrics], dict[str, float]]:
        """Copies of the newest Metrics per service and when each arrived (wall-clock s)."""
        with self._lock:
            return dict(self.latest), dict(self.received)

    def render(self) -> bytes:
        """The Prometheus text exposition (version 0.0.4)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        with self._lock:
            items = sorted(self.latest.items())
            ages = {s: max(0.0, now - self.received[s]) for s, _ in items}
        up = GaugeMetricFamily("facetrack_up", "1 while the stage's metrics are fresh.", labels=["service"])
        age = GaugeMetricFamily("facetrack_metrics_age_seconds", "Seconds since the stage's newest metrics message.",
                                labels=["service"])
        for s, _ in items:
            up.add_metric([s], 1.0 if ages[s] < self.fresh_s else 0.0)
            age.add_metric([s], ages[s])
        yield from (up, age)
        for name, help_text, get in _COUNTERS:
            family = CounterMetricFamily(f"facetrack_{name}", help_text, labels=["service"])
            for s, m in items:
                family.add_metric([s], get(m))
            yield family
        for name, help_text, get in _GAUGES:
            gauge = GaugeMetricFamily(f"facetrack_{name}", help_text, labels=["service"])
            for s, m in items:
                gauge.add_metric([s], get(m))
            yield gauge
        stage = GaugeMetricFamily("facetrack_stage_ms", "Processing time of one frame in the stage (ms).",
                                  labels=["service", "quantile"])
        latency = GaugeMetricFamily("facetrack_latency_ms", "Per-frame latency between two points of the pipeline (ms).",
                                    labels=["service", "path", "quantile"])
        extra = GaugeMetricFamily("facetrack_extra", "The stage's other values (queue depth, skipped frames, board "
                                  "health ...).", labels=["service", "key"])
        for s, m in items:
            stage.add_metric([s, "0.5"], m.p50_ms)
            stage.add_metric([s, "0.99"], m.p99_ms)
            for path, lat in sorted(m.latency_ms.items()):
                latency.add_metric([s, path, "0.5"], lat.p50_ms)
                latency.add_metric([s, path, "0.99"], lat.p99_ms)
            for key, value in sorted(m.extra.items()):
                if key not in BOARD_KEYS:
                    extra.add_metric([s, key], value)
        yield from (stage, latency, extra)
        for key, name, help_text, scale in _BOARD:
            gauge = GaugeMetricFamily(name, help_text, labels=["service"])
            for s, m in items:
                if key in m.extra:
                    gauge.add_metric([s], m.extra[key] * scale)
            yield gauge
        flags = GaugeMetricFamily("facetrack_board_throttle", "1 while the firmware reports this get_throttled bit.",
                                  labels=["service", "flag"])
        for s, m in items:
            for flag in THROTTLE_BITS.values():
                if flag in m.extra:
                    flags.add_metric([s, flag], m.extra[flag])
        yield flags
