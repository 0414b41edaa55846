"""Typed configuration of one stack, loaded from `configs/*.yaml` and validated at start.

Every service calls `load_config()` first: an unknown key or a value of the wrong type or
range raises `ConfigError` with one line naming the key, so a typo stops the service at
start instead of being silently ignored.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key."""


@dataclass(frozen=True)
class StackConfig:
    id: str = "demo"
    run_dir: str = "run"


@dataclass(frozen=True)
class BusConfig:
    publish: str = "ipc://{run_dir}/bus-pub.sock"
    subscribe: str = "ipc://{run_dir}/bus-sub.sock"
    hwm: int = 50


@dataclass(frozen=True)
class RingConfig:
    slots: int = 16
    shm_dir: str = "/dev/shm"


@dataclass(frozen=True)
class CaptureConfig:
    source: str = "demo://"
    width: int = 640
    height: int = 480
    fps: float = 0.0
    loop: bool = True
    lores_width: int = 320
    lores_height: int = 240
    threads: int = 1


@dataclass(frozen=True)
class DetectorConfig:
    variant: str = "full"
    backend: str = "tvm"
    model_dir: str = "models/build"
    every_n: int = 3
    score_threshold: float = 0.5
    nms_iou: float = 0.3
    threads: int = 1
    deadline_s: float = 5.0
    remote: str = ""
    remote_jpeg_quality: int = 85
    remote_max_side: int = 0


@dataclass(frozen=True)
class TrackerConfig:
    kind: str = "kcf"
    match_iou: float = 0.3
    min_hits: int = 2
    max_lost_s: float = 3.0
    drift_iou: float = 0.5
    adaptive: bool = True
    interval_min: int = 1
    interval_max: int = 10
    history: int = 64
    rematch_dist: float = 1.5
    low_score: float = 0.3
    threads: int = 1


@dataclass(frozen=True)
class IdentityConfig:
    gallery: str = "{run_dir}/gallery.sqlite"
    backend: str = "onnxruntime"
    model_dir: str = "models/build"
    threads: int = 1
    threshold: float = 0.5
    min_eye_px: float = 14.0
    better_view: float = 1.3
    max_embeds_per_track: int = 5
    match_iou: float = 0.3
    republish_s: float = 1.0
    reload_s: float = 1.0
    reid: bool = False
    reid_window_s: float = 10.0


@dataclass(frozen=True)
class SinkConfig:
    kind: str = "live"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    jpeg_quality: int = 80
    record_dir: str = "{run_dir}/records"
    privacy_port: int = 8081
    threads: int = 1


@dataclass(frozen=True)
class MonitorConfig:
    interval_s: float = 1.0
    release_heap_s: float = 10.0
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9108


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "facetrack-{stack_id}"
    topic_prefix: str = "facetrack"
    qos: int = 1
    keepalive_s: int = 15
    queue_size: int = 1000
    reconnect_max_s: float = 5.0
    metrics_interval_s: float = 10.0


@dataclass(frozen=True)
class StreamConfig:
    host: str = "127.0.0.1"
    port: int = 8554
    path: str = "/facetrack"
    fps: int = 30
    bitrate_kbps: int = 1500
    gst_python: str = "/usr/bin/python3"


@dataclass(frozen=True)
class WatchdogConfig:
    silent_periods: int = 3
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class Config:
    stack: StackConfig = field(default_factory=StackConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    ring: RingConfig = field(default_factory=RingConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    source_path: str = ""

    @property
    def run_dir(self) -> Path:
        return Path(self.stack.run_dir)

    @property
    def ring_name(self) -> str:
        return f"facetrack-{self.stack.id}"


# Allowed values and ranges: (check, description) per "section.key".
_CHOICES = {
    "detector.variant": {"full", "short"},
    "detector.backend": {"tvm", "torchscript", "torch"},
    "tracker.kind": {"kcf", "csrt", "mosse", "none"},
    "sink.kind": {"live", "recorder", "mqtt", "rtsp", "jsonl", "privacy"},
    "mqtt.qos": {0, 1, 2},
    "identity.backend": {"tvm", "torchscript", "onnxruntime", "torch"},
}
_POSITIVE = {
    "bus.hwm", "ring.slots", "detector.every_n", "detector.threads", "tracker.min_hits",
    "tracker.interval_min", "tracker.interval_max", "tracker.history", "monitor.interval_s",
    "sink.jpeg_quality", "identity.threads", "identity.max_embeds_per_track", "identity.republish_s",
    "identity.reload_s", "identity.threshold", "identity.better_view", "identity.reid_window_s",
    "capture.threads", "tracker.threads", "sink.threads",
}
_NON_NEGATIVE = {"capture.width", "capture.height", "capture.fps", "tracker.max_lost_s",
                 "capture.lores_width", "capture.lores_height", "sink.http_port", "identity.min_eye_px",
                 "monitor.release_heap_s"}
_UNIT_INTERVAL = {"detector.score_threshold", "detector.nms_iou", "tracker.match_iou", "tracker.drift_iou",
                  "tracker.low_score",
                   "identity.match_iou"}
# Watchdog (services/watchdog.py) and the privacy view.
_POSITIVE |= {"detector.deadline_s", "watchdog.silent_periods", "watchdog.backoff_s", "watchdog.backoff_max_s"}
_NON_NEGATIVE |= {"sink.privacy_port", "monitor.prometheus_port"}
# MQTT event sink, RTSP stream sink, remote detector.
_POSITIVE |= {"mqtt.keepalive_s", "mqtt.queue_size", "mqtt.reconnect_max_s", "stream.fps", "stream.bitrate_kbps",
              "detector.remote_jpeg_quality"}
_NON_NEGATIVE |= {"mqtt.port", "mqtt.metrics_interval_s", "stream.port", "detector.remote_max_side"}


def _check_type(key: str, value, annotation) -> object:
    """Return `value` converted to the field's type, or raise ConfigError naming `key`."""
    kind = {"str": str, "int": int, "float": float, "bool": bool}[annotation]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return value


def _check_range(key: str, value) -> None:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"config key '{key}': {value!r} is not one of {sorted(_CHOICES[key])}")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"config key '{key}': must be > 0, got {value!r}")
    if key in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"config key '{key}': must be >= 0, got {value!r}")
    if key in _UNIT_INTERVAL and not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key '{key}': must be between 0 and 1, got {value!r}")


def _build_section(name: str, cls, raw) -> object:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{name}': expected a mapping, got {raw!r}")
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in hints:
            raise ConfigError(f"config key '{full}': unknown key (known: {', '.join(hints)})")
        value = _check_type(full, value, hints[key])
        _check_range(full, value)
        values[key] = value
    return cls(**values)


def _expand(cfg: Config) -> Config:
    """Expand {run_dir} and {stack_id}; make run_dir absolute against the checkout."""
    run_dir = Path(cfg.stack.run_dir)
    if not run_dir.is_absolute():
        run_dir = ROOT / run_dir
    subst = {"run_dir": str(run_dir), "stack_id": cfg.stack.id}
    sections = {}
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        changes = {k: v.format(**subst) for k, v in dataclasses.asdict(section).items() if isinstance(v, str) and "{" in v}
        sections[f.name] = dataclasses.replace(section, **changes)
    sections["stack"] = dataclasses.replace(sections["stack"], run_dir=str(run_dir))
    return dataclasses.replace(cfg, **sections)


def _apply_overrides(data: dict, overrides: typing.Iterable[str]) -> None:
    """Apply `section.key=value` strings (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"config override {item!r}: expected section.key=value")
        path, raw = item.split("=", 1)
        section, key = path.split(".", 1)
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"config key '{section}': expected a mapping")
        data[section][key] = yaml.safe_load(raw) if raw else ""


def load_config(path: str | os.PathLike | None = None, overrides: typing.Iterable[str] = ()) -> Config:
    """Load and validate a stack config.

    `path` defaults to $FACETRACK_CONFIG, then `configs/default.yaml`. Overrides
    (`tracker.kind=csrt`) come from the caller and from $FACETRACK_SET (comma separated).
    """
    path = Path(path or os.environ.get("FACETRACK_CONFIG") or DEFAULT_CONFIG)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections")
    env_overrides = [s for s in os.environ.get("FACETRACK_SET", "").split(",") if s.strip()]
    _apply_overrides(data, [*env_overrides, *overrides])
    sections = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source_path"}
    built = {}
    for name, raw in data.items():
        if name not in sections:
            raise ConfigError(f"config key '{name}': unknown section (known: {', '.join(sections)})")
        cls = globals()[sections[name]]
        built[name] = _build_section(name, cls, raw)
    cfg = Config(**built, source_path=str(path))
    if cfg.tracker.interval_min > cfg.tracker.interval_max:
        raise ConfigError("config key 'tracker.interval_min': must not exceed tracker.interval_max")
    if cfg.identity.better_view < 1.0:
        raise ConfigError(f"config key 'identity.better_view': must be >= 1, got {cfg.identity.better_view!r}")
    if cfg.detector.remote and not cfg.detector.remote.startswith("tcp://"):
        raise ConfigError(f"config key 'detector.remote': expected \"\" or tcp://HOST:PORT, got {cfg.detector.remote!r}")
    if cfg.detector.remote_jpeg_quality > 100:
        raise ConfigError("config key 'detector.remote_jpeg_quality': must be <= 100")
    if cfg.detector.deadline_s <= 2 * cfg.monitor.interval_s:
        raise ConfigError(f"config key 'detector.deadline_s': must exceed 2 x monitor.interval_s "
                          f"({2 * cfg.monitor.interval_s:g} s): a healthy detector reports once a period")
    return _expand(cfg)
