"""Board health parsing, on a sysfs tree laid out as a Pi 5 exposes it."""
from __future__ import annotations

from common.board import read_health


def test_pi_style_sysfs(tmp_path):
    for i, milli in enumerate(("51234", "63900")):
        zone = tmp_path / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(milli + "\n")
    fw = tmp_path / "sys/devices/platform/soc/soc:firmware"
    fw.mkdir(parents=True)
    (fw / "get_throttled").write_text("50005\n")  # undervoltage + throttled now, undervoltage + throttled since boot
    health = read_health(tmp_path)
    assert health["temp_c"] == 63.9
    assert health["undervoltage"] == 1 and health["throttled_occurred"] == 1
    assert health["freq_capped"] == 0 and health["throttled"] == 1 and health["throttled_flags"] == 0x50005


def test_absent_on_this_machine_is_empty_not_an_error(tmp_path):
    assert read_health(tmp_path) == {}
