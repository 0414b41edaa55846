"""Config: defaults load, and every kind of mistake stops with one line naming the key."""
from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.config import (DEFAULT_CONFIG, DETECTOR_BACKENDS, DETECTOR_MODELS, IDENTITY_BACKENDS, ROOT, SECTIONS, TRACKER_KINDS, Config,
                           ConfigError, load_config)


def test_default_config_loads_and_expands_run_dir():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.bus.publish == f"ipc://{ROOT}/run/bus-pub.sock"
    assert cfg.sink.record_dir == f"{ROOT}/run/records"
    assert cfg.ring_name == "facetrack-demo"


def test_overrides_apply_and_are_typed():
    cfg = load_config(DEFAULT_CONFIG, ["tracker.kind=csrt", "detector.every_n=5", "capture.fps=12.5"])
    assert (cfg.tracker.kind, cfg.detector.every_n, cfg.capture.fps) == ("csrt", 5, 12.5)


@pytest.mark.parametrize("text, match", [
    ("tracker:\n  knd: kcf\n", "'tracker.knd': unknown key"),
    ("trackr:\n  kind: kcf\n", "'trackr': unknown section"),
    ("tracker:\n  kind: boosting\n", "'tracker.kind': Invalid enum value 'boosting' \\(allowed: kcf, csrt, mosse, none\\)"),
    ("detector:\n  every_n: 0\n", "'detector.every_n': Expected `int` >= 1, got 0"),
    ("detector:\n  every_n: three\n", "'detector.every_n': Expected `int`, got `str`, got 'three'"),
    ("detector:\n  every_n: 2.5\n", "'detector.every_n': Expected `int`, got `float`"),
    ("detector:\n  score_threshold: 1.5\n", "'detector.score_threshold': Expected `float` <= 1.0, got 1.5"),
    ("tracker:\n  adaptive: sometimes\n", "'tracker.adaptive': Expected `bool`"),
    ("tracker:\n  adaptive: 1\n", "'tracker.adaptive': Expected `bool`, got `int`"),
    ("tracker:\n  interval_min: 5\n  interval_max: 2\n", "section 'tracker': 'tracker.interval_min' \\(5\\) must not exceed 'tracker.interval_max'"),
    ("capture: [1, 2]\n", "'capture': expected a mapping"),
    ("sink:\n  jpeg_quality: 500\n", "'sink.jpeg_quality': Expected `int` <= 100, got 500"),
    ("mqtt:\n  port: 70000\n", "'mqtt.port': Expected `int` <= 65535, got 70000"),
    ("detector:\n  remote: udp://board:5560\n", "'detector.remote': Expected `str` matching regex"),
    ("detector:\n  deadline_s: 1.0\n", "config: detector.deadline_s must exceed 2 x monitor.interval_s"),
    ("stack: {id: demo\n", "not valid YAML"),
])
def test_bad_config_names_the_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_the_yaml_lists_every_key_with_the_types_default():
    """One place for each default (the types); the YAML documents every key with the same value."""
    documented = yaml.safe_load(DEFAULT_CONFIG.read_text())
    defaults = Config()
    for section, cls in SECTIONS.items():
        keys = [f.name for f in msgspec.structs.fields(cls)]
        assert sorted(documented[section]) == sorted(keys), f"{section}: YAML and type list different keys"
        for key in keys:
            value = documented[section][key]  # a YAML list is a tuple in the Struct
            value = tuple(value) if isinstance(value, list) else value
            assert value == getattr(getattr(defaults, section), key), f"{section}.{key}"
    assert sorted(documented) == sorted(SECTIONS)


def test_allowed_names_are_the_ones_the_code_implements():
    from common.tracking import KINDS
    from models.facerec.runtime import BACKENDS as IDENTITY
    from models.runtime import BACKENDS as DETECTOR
    from models.zoo import MODELS

    assert (TRACKER_KINDS, DETECTOR_BACKENDS, IDENTITY_BACKENDS) == (KINDS, DETECTOR, IDENTITY)
    assert DETECTOR_MODELS == tuple(MODELS)
    cfg = load_config(DEFAULT_CONFIG, ["detector.backend=onnxruntime"])  # the README's fastest
    assert cfg.detector.backend == "onnxruntime"


def test_a_sink_kind_the_registry_lacks_stops_the_sink_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "services.sink", "--set", "sink.kind=hologram"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "'sink.kind'" in errors[0] and "hologram" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/facetrack.yaml")


def test_service_stops_with_one_line_on_bad_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tracker:\n  kind: boosting\n")
    proc = subprocess.run([sys.executable, "-m", "services.tracker", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "'tracker.kind'" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("item, match", [
    ("mqtt.topic_prefix={a", "'mqtt.topic_prefix': override value '{a' is not valid YAML"),
    ("tracker.kind=[csrt", "'tracker.kind': override value '\\[csrt' is not valid YAML"),
    ("sink.record_dir='{run_dir'", "'sink.record_dir': a lone brace in '{run_dir'"),
    ("sink.record_dir=/data/{user}/records", "'sink.record_dir': unknown placeholder '{user}'"),
    ("mqtt.client_id=x{}", "'mqtt.client_id': unknown placeholder '{}'"),
    ("mqtt.client_id=x{stack_id.__class__}", "'mqtt.client_id': unknown placeholder"),
    ("mqtt.password_file=pass}", "'mqtt.password_file': a lone brace"),
])
def test_a_brace_or_bad_yaml_in_a_value_names_the_key(item, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(DEFAULT_CONFIG, [item])
    assert "\n" not in str(err.value)


def test_placeholders_and_escaped_braces_expand():
    cfg = load_config(DEFAULT_CONFIG, ["stack.id=hall", "mqtt.client_id=ft-{stack_id}-{{x}}",
                                       "sink.record_dir='{run_dir}/{stack_id}'"])
    assert cfg.mqtt.client_id == "ft-hall-{x}"
    assert cfg.sink.record_dir == f"{ROOT}/run/hall"


KEYS = [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in msgspec.structs.fields(cls)]
# What a person may type or paste: braces, quotes, YAML and format syntax, control characters, long text.
HOSTILE = st.one_of(
    st.text(alphabet=st.sampled_from("{}[]:,#&*!|>'\"%@`\\ \t\n-?=.0123456789abcrun_dirstack_id"), max_size=24),
    st.sampled_from(["{", "}", "{}", "{0}", "{run_dir", "{stack_id!r}", "{run_dir:>99999999}", "{{", "}}",
                     "'", '"', "[", "]]", "- x", "a: b", "!!python/object:os.system", "&a *a", "*a", "|", ">",
                     "%", "@", "`", "null", "~", "1e999", "-0", "nan", ".inf", "0x1F", "yes", "\x00", "\x1b[2J"]),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=HOSTILE, via_file=st.booleans())
def test_fuzz_any_key_any_string_loads_or_names_the_key(tmp_path_factory, key, value, via_file):
    """Every key, any string, through --set or a YAML file: a config, or one line naming that key."""
    overrides = []
    path = DEFAULT_CONFIG
    if via_file:
        section, name = key.split(".")
        path = tmp_path_factory.mktemp("cfg") / "fuzz.yaml"
        path.write_text(yaml.safe_dump({section: {name: value}}))
    else:
        overrides = [f"{key}={value}"]
    try:
        load_config(path, overrides)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert f"'{key}'" in message or message.startswith("config: "), message
