"""Board health for 24/7 runs: SoC temperature and the Pi firmware's throttling flags.

Read from sysfs where the board exposes them (a Pi 5 under Raspberry Pi OS has
`/sys/class/thermal/thermal_zone0/temp` and the firmware's `get_throttled` file); on a
machine without them (these x86 build machines, containers) the values are simply absent.
"""
from __future__ import annotations

from pathlib import Path

THERMAL = "sys/class/thermal"
THROTTLED = ("sys/devices/platform/soc/soc:firmware/get_throttled",
             "sys/devices/platform/axi/axi:firmware/get_throttled")
# bits of get_throttled (Raspberry Pi firmware): now / since boot
THROTTLE_BITS = {0: "undervoltage", 1: "freq_capped", 2: "throttled", 3: "soft_temp_limit",
                 16: "undervoltage_occurred", 17: "freq_capped_occurred", 18: "throttled_occurred",
                 19: "soft_temp_limit_occurred"}


def read_health(root: str | Path = "/") -> dict[str, float]:
    """{"temp_c": hottest thermal zone, "throttled_flags": raw flags, "<flag>": 0/1 ...} as present."""
    root = Path(root)
    health: dict[str, float] = {}
    temps = []
    for zone in sorted((root / THERMAL).glob("thermal_zone*/temp")):
        try:
            temps.append(int(zone.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    if temps:
        health["temp_c"] = max(temps)
    for rel in THROTTLED:
        path = root / rel
        try:
            flags = int(path.read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        health["throttled_flags"] = float(flags)
        health.update({name: float(flags >> bit & 1) for bit, name in THROTTLE_BITS.items()})
        break
    return health
