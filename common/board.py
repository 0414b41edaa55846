"""Board health for 24/7 runs: SoC temperature, CPU frequency and the Pi firmware's throttling flags.

Read from sysfs where the board exposes them (a Pi 5 under Raspberry Pi OS has
`/sys/class/thermal/thermal_zone0/temp`, cpufreq's `scaling_cur_freq` and the firmware
driver's `get_throttled`, the bits `vcgencmd get_throttled` prints); on a machine without
them (these x86 build machines, containers) the values are simply absent. Every stage puts
them in its metrics (a remote detector's are its own host's); $FACETRACK_BOARD_ROOT moves
the root for tests (common/pi.py).
"""
from __future__ import annotations

import os
from pathlib import Path

THERMAL = "sys/class/thermal/thermal_zone*/temp"
CPUFREQ = "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"  # kHz
# the firmware device's name differs per Pi (soc:firmware on a Pi 4, axi or soc@... on a Pi 5)
THROTTLED = ("sys/devices/platform/*firmware/get_throttled", "sys/devices/platform/*/*firmware/get_throttled")
# bits of get_throttled (Raspberry Pi firmware): now / since boot
THROTTLE_BITS = {0: "undervoltage", 1: "freq_capped", 2: "throttled", 3: "soft_temp_limit",
                 16: "undervoltage_occurred", 17: "freq_capped_occurred", 18: "throttled_occurred",
                 19: "soft_temp_limit_occurred"}
NOW = {"undervoltage": "under-voltage", "freq_capped": "frequency capped", "throttled": "throttled",
       "soft_temp_limit": "soft temperature limit"}  # the flags that mean "slowed down right now"


def _numbers(root: Path, pattern: str, base: int = 10) -> list[int]:
    out = []
    for path in sorted(root.glob(pattern)):
        try:
            out.append(int(path.read_text().strip(), base))
        except (OSError, ValueError):
            continue
    return out


def read_health(root: str | os.PathLike | None = None) -> dict[str, float]:
    """{"temp_c": hottest zone, "cpu_mhz": fastest core now, "throttled_flags": raw, "<flag>": 0/1} as present."""
    base = Path(root if root is not None else os.environ.get("FACETRACK_BOARD_ROOT") or "/")
    health: dict[str, float] = {}
    temps = _numbers(base, THERMAL)
    if temps:
        health["temp_c"] = max(temps) / 1000.0
    freqs = _numbers(base, CPUFREQ)
    if freqs:
        health["cpu_mhz"] = max(freqs) / 1000.0
    for pattern in THROTTLED:
        flags = _numbers(base, pattern, 16)  # the driver prints hex, no 0x
        if flags:
            health["throttled_flags"] = float(flags[0])
            health.update({name: float(flags[0] >> bit & 1) for bit, name in THROTTLE_BITS.items()})
            break
    return health


def slowed(health: dict[str, float]) -> list[str]:
    """The "now" flags that are set, in words (under-voltage, frequency capped, ...)."""
    return [words for key, words in NOW.items() if health.get(key)]


def describe(health: dict[str, float]) -> str:
    """One line for people: "SoC 52.4 °C, CPU 2400 MHz, not throttled" (what is known)."""
    parts = []
    if "temp_c" in health:
        parts.append(f"SoC {health['temp_c']:.1f} °C")
    if "cpu_mhz" in health:
        parts.append(f"CPU {health['cpu_mhz']:.0f} MHz")
    if "throttled_flags" in health:
        now = slowed(health)
        past = [NOW[k.removesuffix("_occurred")] for k in THROTTLE_BITS.values()
                if k.endswith("_occurred") and health.get(k)]
        parts.append(("THROTTLED: " + ", ".join(now)) if now else "not throttled")
        if past:
            parts.append("since boot: " + ", ".join(past))
        parts.append(f"get_throttled=0x{int(health['throttled_flags']):x}")
    return ", ".join(parts)


class ThrottleWatch:
    """One WARNING line when the board starts being slowed (or the reasons change), one INFO when it ends."""

    def __init__(self, log):
        self.log = log
        self.now: list[str] = []

    def update(self, health: dict[str, float]) -> None:
        now = slowed(health)
        if now == self.now:
            return
        if now:
            self.log.warning("board throttled (%s): %s; check the power supply and cooling", ", ".join(now),
                             describe(health))
        else:
            self.log.info("board no longer throttled: %s", describe(health))
        self.now = now
