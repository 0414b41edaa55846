"""Config: defaults load, and every kind of mistake stops with one line naming the key."""
from __future__ import annotations

import subprocess
import sys

import pytest

from common.config import DEFAULT_CONFIG, ROOT, ConfigError, load_config


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
    ("tracker:\n  kind: boosting\n", "'tracker.kind': 'boosting' is not one of"),
    ("detector:\n  every_n: 0\n", "'detector.every_n': must be > 0"),
    ("detector:\n  every_n: three\n", "'detector.every_n': expected an integer"),
    ("detector:\n  score_threshold: 1.5\n", "'detector.score_threshold': must be between 0 and 1"),
    ("tracker:\n  adaptive: sometimes\n", "'tracker.adaptive': expected true/false"),
    ("tracker:\n  interval_min: 5\n  interval_max: 2\n", "'tracker.interval_min': must not exceed"),
    ("capture: [1, 2]\n", "'capture': expected a mapping"),
    ("stack: {id: demo\n", "not valid YAML"),
])
def test_bad_config_names_the_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert "\n" not in str(err.value)


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
