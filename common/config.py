"""Typed configuration of one stack, loaded from `configs/*.yaml` and validated at start.

Every section is a frozen msgspec Struct: a field's type, range and default are declared
once, on the field (`Meta(ge=..., le=...)`), and msgspec checks them (strict: no "3" for 3,
no 1 for true; unknown keys refused). msgspec rather than pydantic: it costs a process about
3 MB where pydantic costs 14, and a board runs eight processes. Every service calls `load_config()` first: a mistake
raises `ConfigError` with one line naming the key, so a typo stops the service at start
instead of being silently ignored. `configs/default.yaml` lists every key with the same
value as here and says what it does (tests/test_config.py proves they agree).

Allowed names are those the code implements: tracker kinds (common/tracking), detector
models (models/zoo.py), detector and identity backends (models/runtime.py,
models/facerec/runtime.py); the lists are written here so loading a config imports no
OpenCV or model code, and a test checks they equal the code's.
Sink kinds are checked by the sink process against its registry (services/sinks/).
"""
from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml
from msgspec import Meta

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"

# The choices, once: Literal types for the Structs (msgspec and mypy both read them), and the
# tuples derived from them for the code registries (tests/test_config.py compares the two).
TrackerKind = Literal["kcf", "csrt", "mosse", "none"]
DetectorModel = Literal["full", "short", "yunet"]
DetectorBackend = Literal["auto", "tvm", "torchscript", "onnxruntime", "torch"]
IdentityBackend = Literal["auto", "tvm", "torchscript", "onnxruntime", "torch"]
TRACKER_KINDS: tuple[str, ...] = typing.get_args(TrackerKind)
DETECTOR_MODELS: tuple[str, ...] = typing.get_args(DetectorModel)
DETECTOR_BACKENDS: tuple[str, ...] = typing.get_args(DetectorBackend)
IDENTITY_BACKENDS: tuple[str, ...] = typing.get_args(IdentityBackend)

Positive = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[int, Meta(ge=0)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
Port = Annotated[int, Meta(ge=0, le=65535, description="TCP port; 0 = any free one where the service allows it")]
JpegQuality = Annotated[int, Meta(ge=1, le=100)]
Side = Annotated[int, Meta(ge=32, le=4096)]


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key."""


class StackConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str = "demo"
    run_dir: str = "run"


class BusConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    publish: str = "ipc://{run_dir}/bus-pub.sock"
    subscribe: str = "ipc://{run_dir}/bus-sub.sock"
    hwm: Positive = 50


class RingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slots: Positive = 16
    shm_dir: str = "/dev/shm"


class CaptureConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str = "faces://4"
    width: NonNegative = 640
    height: NonNegative = 480
    fps: NonNegativeFloat = 0.0
    loop: bool = True
    lores_width: NonNegative = 320
    lores_height: NonNegative = 240
    threads: Positive = 1
    stream_open_timeout_s: PositiveFloat = 5.0
    stream_read_timeout_s: PositiveFloat = 5.0
    reconnect_min_s: PositiveFloat = 0.5
    reconnect_max_s: PositiveFloat = 10.0


class DetectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    variant: DetectorModel = "full"
    input_size: tuple[Side, Side] = (640, 480)
    backend: DetectorBackend = "auto"
    model_dir: str = "models/build"
    every_n: Positive = 3
    score_threshold: Fraction | None = None  # None: the model's own (models/zoo.py)
    nms_iou: Fraction | None = None          # None: the model's own
    threads: Positive = 1
    deadline_s: PositiveFloat = 5.0
    remote: Annotated[str, Meta(pattern=r"^(|tcp://.+)$", description='"" or tcp://HOST:PORT')] = ""
    remote_jpeg_quality: JpegQuality = 85
    remote_max_side: NonNegative = 0
    remote_key: str = ""
    remote_authorized_dir: str = ""
    remote_board_key: str = ""
    remote_insecure: bool = False


class TrackerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: TrackerKind = "kcf"
    match_iou: Fraction = 0.3
    min_hits: Positive = 2
    max_lost_s: NonNegativeFloat = 3.0
    drift_iou: Fraction = 0.5
    adaptive: bool = True
    interval_min: Positive = 1
    interval_max: Positive = 10
    history: Positive = 64
    rematch_dist: NonNegativeFloat = 1.5
    rematch_growth: NonNegativeFloat = 3.0
    rematch_max: Annotated[float, Meta(ge=1)] = 2.0
    low_score: Fraction = 0.3
    threads: Positive = 1

    def __post_init__(self):
        if self.interval_min > self.interval_max:
            raise ValueError(f"'tracker.interval_min' ({self.interval_min}) must not exceed "
                             f"'tracker.interval_max' ({self.interval_max})")


class IdentityConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    gallery: str = "{run_dir}/gallery.sqlite"
    backend: IdentityBackend = "auto"
    model_dir: str = "models/build"
    threads: Positive = 1
    threshold: PositiveFloat = 0.5
    min_eye_px: NonNegativeFloat = 14.0
    better_view: Annotated[float, Meta(ge=1)] = 1.3
    max_embeds_per_track: Positive = 5
    match_iou: Fraction = 0.3
    republish_s: PositiveFloat = 1.0
    reload_s: PositiveFloat = 1.0
    reid: bool = False
    reid_window_s: PositiveFloat = 10.0


class SinkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: str = "live"
    http_host: str = "127.0.0.1"
    http_port: Port = 8080
    jpeg_quality: JpegQuality = 80
    record_dir: str = "{run_dir}/records"
    retention_days: NonNegativeFloat = 7.0
    max_record_mb: NonNegativeFloat = 1024.0
    retention_check_s: PositiveFloat = 5.0
    privacy_port: Port = 8081
    privacy_margin: NonNegativeFloat = 0.2
    privacy_blocks: Positive = 8
    stale_s: PositiveFloat = 5.0
    max_streams: Positive = 16
    client_timeout_s: PositiveFloat = 10.0
    threads: Positive = 1
    recent_faces: Positive = 24
    max_body_bytes: Positive = 4096
    gallery_timeout_s: PositiveFloat = 15.0


class SnapshotsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    margin: NonNegativeFloat = 0.25
    jpeg_quality: JpegQuality = 90
    better_view: Annotated[float, Meta(ge=1)] = 1.2
    min_interval_s: NonNegativeFloat = 1.0
    min_face_px: NonNegativeFloat = 24.0


class MonitorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval_s: PositiveFloat = 1.0
    release_heap_s: NonNegativeFloat = 10.0
    prometheus_host: str = "127.0.0.1"
    prometheus_port: Port = 9108


class EventsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Hysteresis of the track events and face state a home automation reacts to (services/sinks/mqtt_events.py)."""
    end_after_s: NonNegativeFloat = 1.0
    rejoin_iou: Fraction = 0.3
    name_hold_s: NonNegativeFloat = 1.0


class MqttConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 1883
    client_id: str = "facetrack-{stack_id}"
    topic_prefix: str = "facetrack"
    qos: Literal[0, 1, 2] = 1
    keepalive_s: Positive = 15
    queue_size: Positive = 1000
    reconnect_max_s: PositiveFloat = 5.0
    metrics_interval_s: NonNegativeFloat = 10.0
    username: str = ""
    password_file: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""


class HomeAssistantConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    node_id: str = "facetrack_{stack_id}"
    device_name: str = "facetrack {stack_id}"
    configuration_url: str = ""


class StreamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 8554
    path: str = "/facetrack"
    fps: Positive = 30
    bitrate_kbps: Positive = 1500
    gst_python: str = "/usr/bin/python3"


class WatchdogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    silent_periods: Positive = 3
    backoff_s: PositiveFloat = 2.0
    backoff_max_s: PositiveFloat = 60.0


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who may use the HTTP servers (live and privacy views, the watchdog's exporter): common/http_access.py."""
    credentials_file: str = ""
    metrics_token_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_connections: Positive = 64
    head_timeout_s: PositiveFloat = 10.0


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stack: StackConfig = msgspec.field(default_factory=StackConfig)
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    ring: RingConfig = msgspec.field(default_factory=RingConfig)
    capture: CaptureConfig = msgspec.field(default_factory=CaptureConfig)
    detector: DetectorConfig = msgspec.field(default_factory=DetectorConfig)
    tracker: TrackerConfig = msgspec.field(default_factory=TrackerConfig)
    identity: IdentityConfig = msgspec.field(default_factory=IdentityConfig)
    sink: SinkConfig = msgspec.field(default_factory=SinkConfig)
    snapshots: SnapshotsConfig = msgspec.field(default_factory=SnapshotsConfig)
    monitor: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    watchdog: WatchdogConfig = msgspec.field(default_factory=WatchdogConfig)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    home_assistant: HomeAssistantConfig = msgspec.field(default_factory=HomeAssistantConfig)
    stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    source_path: str = ""

    def __post_init__(self):
        if self.detector.deadline_s <= 2 * self.monitor.interval_s:
            raise ValueError(f"detector.deadline_s must exceed 2 x monitor.interval_s ({2 * self.monitor.interval_s:g} s): "
                             "a healthy detector reports once a period")

    @property
    def run_dir(self) -> Path:
        return Path(self.stack.run_dir)

    @property
    def ring_name(self) -> str:
        return f"facetrack-{self.stack.id}"


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in msgspec.structs.fields(Config) if f.name != "source_path"}


def replace(section, **changes):
    """A copy of a config section (or Config) with some fields changed, validated like a loaded one."""
    return msgspec.convert({**msgspec.structs.asdict(section), **changes}, type(section))


def _one_line(exc: msgspec.ValidationError, data: dict) -> str:
    """msgspec's message (`Expected `int` >= 1 - at `$.tracker.min_hits``) as one line naming the key and value."""
    message, _, where = str(exc).rpartition(" - at `$")
    if not message:
        message, where = str(exc), ""
    key = where.rstrip("`").lstrip(".")
    if message.startswith("Object contains unknown field"):
        key = ".".join(filter(None, [key, message.split("`")[1]]))
        if "." not in key:
            return f"config key '{key}': unknown section (known: {', '.join(SECTIONS)})"
        known = [f.name for f in msgspec.structs.fields(SECTIONS[key.split('.')[0]])]
        return f"config key '{key}': unknown key (known: {', '.join(known)})"
    if not key:  # a check across sections names its keys itself
        return f"config: {message}"
    if message.startswith("Expected `object`"):
        return f"config key '{key}': expected a mapping, {message.split(', ', 1)[-1]}"
    if "." not in key:  # a check across the keys of one section names its keys itself
        return f"config section '{key}': {message}"
    if message.startswith("Invalid enum value"):
        section, name = key.split(".", 1)
        allowed = typing.get_args(typing.get_type_hints(SECTIONS[section])[name])
        message += f" (allowed: {', '.join(map(str, allowed))})"
    value: object = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return f"config key '{key}': {message}, got {value!r:.80}"


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def _substitute(key: str, value: str, subst: dict[str, str]) -> str:
    """`value` with its {name} placeholders filled in ({{ and }} are literal braces). Only the
    names in `subst`: str.format would also take {x.attr}, {x[0]} and format specs from a config."""
    def fill(m: re.Match) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        if m.group(1) in subst:
            return subst[m.group(1)]
        what = "a lone brace" if len(token) == 1 else f"unknown placeholder {token!r}"
        raise ConfigError(f"config key '{key}': {what} in {value!r:.80} (placeholders: "
                          f"{', '.join('{' + n + '}' for n in subst)}; write {{{{ and }}}} for braces)")
    return _PLACEHOLDER.sub(fill, value)


def _expand(cfg: Config) -> Config:
    """Expand {run_dir} and {stack_id}; make run_dir absolute against the checkout."""
    run_dir = Path(cfg.stack.run_dir)
    if not run_dir.is_absolute():
        run_dir = ROOT / run_dir
    subst = {"run_dir": str(run_dir), "stack_id": cfg.stack.id}
    sections = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        changes = {k: _substitute(f"{name}.{k}", v, subst) for k, v in msgspec.structs.asdict(section).items()
                   if isinstance(v, str) and ("{" in v or "}" in v)}
        sections[name] = msgspec.structs.replace(section, **changes)
    sections["stack"] = msgspec.structs.replace(sections["stack"], run_dir=str(run_dir))
    return msgspec.structs.replace(cfg, **sections)


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
        try:
            data[section][key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"config key '{path}': override value {raw!r:.80} is not valid YAML "
                              f"({str(exc).splitlines()[0]}); quote it") from None


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
        cfg = msgspec.convert({**data, "source_path": str(path)}, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_one_line(exc, data)) from None
    return _expand(cfg)
