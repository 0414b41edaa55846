"""Every stage's newest Metrics message in the Prometheus text exposition format (0.0.4).

The live view serves this at `/metrics`: its sink process subscribes to the `metrics` topic
too, so one scrape shows the whole stack. Families (label `service` = the stage):

  facetrack_up                      1 while the stage's metrics are fresh (< 3 periods old)
  facetrack_metrics_age_seconds     age of the newest metrics message
  facetrack_frames_in_total / facetrack_frames_out_total / facetrack_dropped_total /
  facetrack_errors_total            the stage's counters (reset when the process restarts)
  facetrack_fps, facetrack_cpu_percent, facetrack_rss_bytes, facetrack_process_id
  facetrack_stage_ms{quantile}      processing time per frame, p50 and p99
  facetrack_latency_ms{path,quantile}  per-frame latency between two pipeline points, e.g.
                                    path="capture_to_tracked" (the `lat_*` extras)
  facetrack_extra{key}              every other extra value (queue depth, skipped, temp_c ...)
"""
from __future__ import annotations

import math
import re
import threading
import time

from common.messages import Metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SERVICES = 64  # a forged stream of service names must not grow the table without bound

_LAT = re.compile(r"^lat_(.+)_p(50|99)_ms$")
_FIXED = (
    ("frames_in_total", "counter", "Frames (or messages) the stage took in.", lambda m: m.frames_in),
    ("frames_out_total", "counter", "Frames the stage finished.", lambda m: m.frames_out),
    ("dropped_total", "counter", "Frames the stage dropped (skipped, overwritten, lost).", lambda m: m.dropped),
    ("errors_total", "counter", "Malformed messages and failed frames.", lambda m: m.errors),
    ("fps", "gauge", "Frames finished per second (last 2 s).", lambda m: m.fps),
    ("cpu_percent", "gauge", "CPU use of the stage's process (100 = one core).", lambda m: m.cpu_percent),
    ("rss_bytes", "gauge", "Resident memory of the stage's process.", lambda m: m.rss_bytes),
    ("process_id", "gauge", "PID of the stage's process.", lambda m: m.pid),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class MetricsTable:
    """The newest Metrics per service, rendered on demand."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.latest: dict[str, Metrics] = {}
        self.received: dict[str, float] = {}
        self._lock = threading.Lock()  # updated by the bus loop, rendered by HTTP threads

    def update(self, msg: Metrics) -> None:
        with self._lock:
            self._update(msg)

    def _update(self, msg: Metrics) -> None:
        self.latest.pop(msg.service, None)  # re-insert: dict order is then oldest-updated first
        self.latest[msg.service] = msg
        self.received[msg.service] = time.time()
        while len(self.latest) > MAX_SERVICES:
            oldest = next(iter(self.latest))
            del self.latest[oldest]
            self.received.pop(oldest, None)

    def render(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        with self._lock:
            items = sorted(self.latest.items())
            received = dict(self.received)
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP facetrack_{name} {help_text}")
            out.append(f"# TYPE facetrack_{name} {kind}")
            out.extend(f"facetrack_{name}{labels} {_number(v)}" for labels, v in samples)

        ages = {s: max(0.0, now - received[s]) for s, _ in items}
        family("up", "gauge", "1 while the stage's metrics are fresh (younger than 3 periods).",
               [(_labels(service=s), 1.0 if ages[s] < 3 * self.period_s else 0.0) for s, _ in items])
        family("metrics_age_seconds", "gauge", "Seconds since the stage's newest metrics message.",
               [(_labels(service=s), ages[s]) for s, _ in items])
        for name, kind, help_text, get in _FIXED:
            family(name, kind, help_text, [(_labels(service=s), get(m)) for s, m in items])
        family("stage_ms", "gauge", "Processing time of one frame in the stage (ms).",
               [(_labels(service=s, quantile=q), v) for s, m in items
                for q, v in (("0.5", m.p50_ms), ("0.99", m.p99_ms))])
        latency, extra = [], []
        for s, m in items:
            for key, value in sorted(m.extra.items()):
                match = _LAT.match(key)
                if match:
                    q = "0.5" if match.group(2) == "50" else "0.99"
                    latency.append((_labels(service=s, path=match.group(1), quantile=q), value))
                else:
                    extra.append((_labels(service=s, key=key), value))
        family("latency_ms", "gauge", "Per-frame latency between two points of the pipeline (ms).", latency)
        family("extra", "gauge", "The stage's other values (queue depth, skipped frames, board health ...).", extra)
        return "\n".join(out) + "\n"
