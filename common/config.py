"""Typed configuration of one stack, loaded from `configs/*.yaml` and validated at start.

Every section is a frozen pydantic dataclass: a field's type, range and default are declared
once, on the field (`Field(ge=..., le=...)`), and pydantic checks them (strict: no "3" for 3,
no 1 for true; unknown keys refused). Every service calls `load_config()` first: a mistake
raises `ConfigError` with one line naming the key, so a typo stops the service at start
instead of being silently ignored. `configs/default.yaml` lists every key with the same
value as here and says what it does (tests/test_config.py proves they agree).

Allowed names are those the code implements: tracker kinds (common/tracking), detector and
identity backends (models/runtime.py, models/facerec/runtime.py); the lists are written here
so loading a config imports no OpenCV or model code, and a test checks they equal the code's.
Sink kinds are checked by the sink process against its registry (services/sinks/).
"""
from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"

TRACKER_KINDS = ("kcf", "csrt", "mosse", "none")
DETECTOR_BACKENDS = ("tvm", "torchscript", "onnxruntime", "torch")
IDENTITY_BACKENDS = ("tvm", "torchscript", "onnxruntime", "torch")

_SECTION = ConfigDict(extra="forbid")
# Strict scalars: YAML's `3` is no float-free string, `yes` no integer, `1` no boolean.
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Positive = Annotated[int, Strict(), Field(gt=0)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegative = Annotated[int, Strict(), Field(ge=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]
Port = Annotated[int, Strict(), Field(ge=0, le=65535, description="TCP port; 0 = any free one where the service allows it")]
JpegQuality = Annotated[int, Strict(), Field(ge=1, le=100)]


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key."""


@dataclass(frozen=True, config=_SECTION)
class StackConfig:
    id: Str = "demo"
    run_dir: Str = "run"


@dataclass(frozen=True, config=_SECTION)
class BusConfig:
    publish: Str = "ipc://{run_dir}/bus-pub.sock"
    subscribe: Str = "ipc://{run_dir}/bus-sub.sock"
    hwm: Positive = 50


@dataclass(frozen=True, config=_SECTION)
class RingConfig:
    slots: Positive = 16
    shm_dir: Str = "/dev/shm"


@dataclass(frozen=True, config=_SECTION)
class CaptureConfig:
    source: Str = "demo://"
    width: NonNegative = 640
    height: NonNegative = 480
    fps: NonNegativeFloat = 0.0
    loop: Bool = True
    lores_width: NonNegative = 320
    lores_height: NonNegative = 240
    threads: Positive = 1


@dataclass(frozen=True, config=_SECTION)
class DetectorConfig:
    variant: Literal["full", "short"] = "full"
    backend: Literal[DETECTOR_BACKENDS] = "tvm"
    model_dir: Str = "models/build"
    every_n: Positive = 3
    score_threshold: Fraction = 0.5
    nms_iou: Fraction = 0.3
    threads: Positive = 1
    deadline_s: PositiveFloat = 5.0
    remote: Annotated[str, Strict(), Field(pattern=r"^(|tcp://.+)$", description='"" or tcp://HOST:PORT')] = ""
    remote_jpeg_quality: JpegQuality = 85
    remote_max_side: NonNegative = 0


@dataclass(frozen=True, config=_SECTION)
class TrackerConfig:
    kind: Literal[TRACKER_KINDS] = "kcf"
    match_iou: Fraction = 0.3
    min_hits: Positive = 2
    max_lost_s: NonNegativeFloat = 3.0
    drift_iou: Fraction = 0.5
    adaptive: Bool = True
    interval_min: Positive = 1
    interval_max: Positive = 10
    history: Positive = 64
    rematch_dist: NonNegativeFloat = 1.5
    start_score: Fraction = 0.5
    low_score: Fraction = 0.3
    threads: Positive = 1

    @model_validator(mode="after")
    def _interval_bounds(self):
        if self.interval_min > self.interval_max:
            raise ValueError(f"interval_min ({self.interval_min}) must not exceed interval_max ({self.interval_max})")
        return self


@dataclass(frozen=True, config=_SECTION)
class IdentityConfig:
    gallery: Str = "{run_dir}/gallery.sqlite"
    backend: Literal[IDENTITY_BACKENDS] = "onnxruntime"
    model_dir: Str = "models/build"
    threads: Positive = 1
    threshold: PositiveFloat = 0.5
    min_eye_px: NonNegativeFloat = 14.0
    better_view: Annotated[float, Strict(), Field(ge=1)] = 1.3
    max_embeds_per_track: Positive = 5
    match_iou: Fraction = 0.3
    republish_s: PositiveFloat = 1.0
    reload_s: PositiveFloat = 1.0
    reid: Bool = False
    reid_window_s: PositiveFloat = 10.0


@dataclass(frozen=True, config=_SECTION)
class SinkConfig:
    kind: Str = "live"
    http_host: Str = "127.0.0.1"
    http_port: Port = 8080
    jpeg_quality: JpegQuality = 80
    record_dir: Str = "{run_dir}/records"
    privacy_port: Port = 8081
    threads: Positive = 1


@dataclass(frozen=True, config=_SECTION)
class MonitorConfig:
    interval_s: PositiveFloat = 1.0
    release_heap_s: NonNegativeFloat = 10.0
    prometheus_host: Str = "127.0.0.1"
    prometheus_port: Port = 9108


@dataclass(frozen=True, config=_SECTION)
class MqttConfig:
    host: Str = "127.0.0.1"
    port: Port = 1883
    client_id: Str = "facetrack-{stack_id}"
    topic_prefix: Str = "facetrack"
    qos: Literal[0, 1, 2] = 1
    keepalive_s: Positive = 15
    queue_size: Positive = 1000
    reconnect_max_s: PositiveFloat = 5.0
    metrics_interval_s: NonNegativeFloat = 10.0


@dataclass(frozen=True, config=_SECTION)
class StreamConfig:
    host: Str = "127.0.0.1"
    port: Port = 8554
    path: Str = "/facetrack"
    fps: Positive = 30
    bitrate_kbps: Positive = 1500
    gst_python: Str = "/usr/bin/python3"


@dataclass(frozen=True, config=_SECTION)
class WatchdogConfig:
    silent_periods: Positive = 3
    backoff_s: PositiveFloat = 2.0
    backoff_max_s: PositiveFloat = 60.0


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Config:
    stack: StackConfig = dataclasses.field(default_factory=StackConfig)
    bus: BusConfig = dataclasses.field(default_factory=BusConfig)
    ring: RingConfig = dataclasses.field(default_factory=RingConfig)
    capture: CaptureConfig = dataclasses.field(default_factory=CaptureConfig)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    tracker: TrackerConfig = dataclasses.field(default_factory=TrackerConfig)
    identity: IdentityConfig = dataclasses.field(default_factory=IdentityConfig)
    sink: SinkConfig = dataclasses.field(default_factory=SinkConfig)
    monitor: MonitorConfig = dataclasses.field(default_factory=MonitorConfig)
    watchdog: WatchdogConfig = dataclasses.field(default_factory=WatchdogConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    stream: StreamConfig = dataclasses.field(default_factory=StreamConfig)
    source_path: Str = ""

    @model_validator(mode="after")
    def _deadline_after_periods(self):
        if self.detector.deadline_s <= 2 * self.monitor.interval_s:
            raise ValueError(f"detector.deadline_s must exceed 2 x monitor.interval_s ({2 * self.monitor.interval_s:g} s): "
                             "a healthy detector reports once a period")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.stack.run_dir)

    @property
    def ring_name(self) -> str:
        return f"facetrack-{self.stack.id}"


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "source_path"}
_CONFIG = TypeAdapter(Config)


def _one_line(exc: ValidationError) -> str:
    """The first problem pydantic found, as `config key 'section.key': what is wrong, got VALUE`."""
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc)
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        if len(loc) == 1:
            return f"config key '{key}': unknown section (known: {', '.join(SECTIONS)})"
        known = [f.name for f in dataclasses.fields(SECTIONS[loc[0]]())]
        return f"config key '{key}': unknown key (known: {', '.join(known)})"
    message = err["msg"].removeprefix("Value error, ")
    if not loc:  # a check across sections names its keys itself
        return f"config: {message}"
    if err["type"] in ("dataclass_type", "dataclass_exact_type", "dict_type"):
        return f"config key '{key}': expected a mapping, got {err['input']!r:.80}"
    got = "" if err["type"].startswith("value_error") else f", got {err['input']!r:.80}"
    return f"config key '{key}': {message}{got}"


def _expand(cfg: Config) -> Config:
    """Expand {run_dir} and {stack_id}; make run_dir absolute against the checkout."""
    run_dir = Path(cfg.stack.run_dir)
    if not run_dir.is_absolute():
        run_dir = ROOT / run_dir
    subst = {"run_dir": str(run_dir), "stack_id": cfg.stack.id}
    sections = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        changes = {f.name: getattr(section, f.name).format(**subst) for f in dataclasses.fields(section)
                   if isinstance(getattr(section, f.name), str) and "{" in getattr(section, f.name)}
        sections[name] = dataclasses.replace(section, **changes)
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
    data = {name: {} if raw is None else raw for name, raw in data.items()}
    try:
        cfg = _CONFIG.validate_python({**data, "source_path": str(path)})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    return _expand(cfg)
