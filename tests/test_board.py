"""Board health on fake sysfs trees laid out as a Pi 5 exposes them: normal, hot, throttled, under-voltage.

Each tree is read by common/board.py and the values are followed to where an owner sees them:
a stage's metrics (MetricsReporter), Prometheus, `facetrack monitor`, Home Assistant's
diagnostic entities (their Jinja templates rendered on the metrics JSON the mqtt sink sends),
and the one WARNING line of a throttled board.
"""
from __future__ import annotations

import logging
import re

import jinja2
import pytest

from common.board import ThrottleWatch, read_health
from common.config import Config
from common.prometheus import StackMetrics
from common.service import MetricsReporter, StageStats
from facetrack.monitor import board_lines
from services.sinks import home_assistant as ha

# (SoC millidegrees per zone, cpufreq kHz per core, get_throttled as the driver prints it)
TREES = {
    "normal": (("48312", "47100"), ("2400000", "2400000"), "0"),
    "hot": (("84950", "83000"), ("1500000", "1500000"), "80008"),  # soft temp limit now and since boot
    "throttled": (("86200",), ("1000000",), "e0006"),  # capped + throttled now; capped, throttled, soft since boot
    "undervoltage": (("51234", "63900"), ("600000",), "50005"),  # under-voltage + throttled, now and since boot
}


def tree(root, name: str, fw: str = "sys/devices/platform/axi/axi:firmware"):
    temps, freqs, throttled = TREES[name]
    for i, milli in enumerate(temps):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(milli + "\n")
    for i, khz in enumerate(freqs):
        cpu = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        cpu.mkdir(parents=True)
        (cpu / "scaling_cur_freq").write_text(khz + "\n")
    (root / fw).mkdir(parents=True)
    (root / fw / "get_throttled").write_text(throttled + "\n")
    return root


@pytest.fixture(params=sorted(TREES))
def board(request, tmp_path):
    return request.param, tree(tmp_path, request.param)


NOW_FLAGS = ("undervoltage", "freq_capped", "throttled", "soft_temp_limit")
EXPECTED = {  # name -> (temp_c, cpu_mhz, raw flags, flags set now)
    "normal": (48.312, 2400.0, 0x0, ()),
    "hot": (84.95, 1500.0, 0x80008, ("soft_temp_limit",)),
    "throttled": (86.2, 1000.0, 0xE0006, ("freq_capped", "throttled")),
    "undervoltage": (63.9, 600.0, 0x50005, ("undervoltage", "throttled")),
}


def test_readings(board):
    name, root = board
    temp, mhz, raw, now = EXPECTED[name]
    health = read_health(root)
    assert health["temp_c"] == pytest.approx(temp) and health["cpu_mhz"] == mhz and health["throttled_flags"] == raw
    assert {f for f in NOW_FLAGS if health[f]} == set(now)
    assert health["undervoltage_occurred"] == (name == "undervoltage")
    assert health["soft_temp_limit_occurred"] == (name in ("hot", "throttled"))


def test_a_pi4_firmware_path_and_the_root_from_the_environment(tmp_path, monkeypatch):
    tree(tmp_path, "undervoltage", fw="sys/devices/platform/soc/soc:firmware")
    monkeypatch.setenv("FACETRACK_BOARD_ROOT", str(tmp_path))
    assert read_health()["undervoltage"] == 1


def test_absent_on_this_machine_is_empty_not_an_error(tmp_path):
    assert read_health(tmp_path) == {}


class _Sent:
    def __init__(self):
        self.msgs = []

    def send(self, msg):
        self.msgs.append(msg)


def test_every_stage_reports_it_and_prometheus_and_monitor_show_it(board, monkeypatch):
    name, root = board
    temp, mhz, raw, now = EXPECTED[name]
    monkeypatch.setenv("FACETRACK_BOARD_ROOT", str(root))
    metrics = MetricsReporter("capture", _Sent(), StageStats(), 1.0).snapshot()
    assert metrics.extra["temp_c"] == pytest.approx(temp) and metrics.extra["throttled_flags"] == raw
    stack = StackMetrics(1.0, 3)
    stack.update(metrics)
    text = stack.render().decode()

    def value(family: str, labels: str) -> float:
        return float(re.search(rf"^{family}\{{{labels}\}} (\S+)$", text, re.M).group(1))
    assert value("facetrack_board_temperature_celsius", 'service="capture"') == pytest.approx(temp)
    assert value("facetrack_board_cpu_frequency_hertz", 'service="capture"') == mhz * 1e6
    assert value("facetrack_board_throttled_flags", 'service="capture"') == raw
    for flag in NOW_FLAGS:
        assert value("facetrack_board_throttle", f'flag="{flag}",service="capture"') == (flag in now)
    assert 'key="temp_c"' not in text  # not twice
    [line] = board_lines({"capture": metrics})
    assert line.startswith(f"board: SoC {temp:.1f} °C, CPU {mhz:.0f} MHz, ")
    assert ("THROTTLED" in line) == bool(now) and f"get_throttled=0x{raw:x}" in line
    if name == "undervoltage":
        assert "THROTTLED: under-voltage, throttled" in line


def test_home_assistant_diagnostic_entities_read_the_metrics_the_sink_sends(board):
    name, root = board
    temp, mhz, _, now = EXPECTED[name]
    health = read_health(root)
    configs = ha.board_configs(Config(), health)
    payload = {"service": "capture", "fps": 30.0, "extra": health}  # what the mqtt sink publishes per stage
    states = {}
    for topic, cfg in configs.items():
        assert cfg["entity_category"] == "diagnostic" and cfg["state_topic"].endswith("/metrics/capture")
        states[topic.split("/")[-2]] = jinja2.Template(cfg["value_template"]).render(value_json=payload)
    assert float(states["board_temperature"]) == pytest.approx(temp) and float(states["board_cpu_frequency"]) == mhz
    assert states["board_throttled"] == ("ON" if set(now) - {"undervoltage"} else "OFF")
    assert states["board_undervoltage"] == ("ON" if "undervoltage" in now else "OFF")
    assert ha.board_configs(Config(), {}) == {}  # a board that exposes nothing gets no entities


def test_a_throttled_board_logs_one_warning_line(tmp_path, caplog):
    log = logging.getLogger("facetrack.test_board")
    watch = ThrottleWatch(log)
    normal, hot, under = (read_health(tree(tmp_path / n, n)) for n in ("normal", "hot", "undervoltage"))
    with caplog.at_level(logging.INFO, logger=log.name):
        for health in (normal, normal, under, under, under, normal, hot):
            watch.update(health)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "WARNING"]
    assert lines[0][1].startswith("board throttled (under-voltage, throttled): SoC 63.9 °C")
    assert "check the power supply and cooling" in lines[0][1]
    assert lines[1][1].startswith("board no longer throttled: SoC 48.3 °C")
    assert lines[2][1].startswith("board throttled (soft temperature limit): SoC 85.0 °C")
