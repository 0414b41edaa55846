"""`facetrack monitor`: every stage's metrics, live, from the bus.

A refreshing table for people, `--json` (one metrics or StackHealth message per line) for scripts. A stage
whose metrics stop for watchdog.silent_periods periods is shown as SILENT: a hung or dead process is seen
even when supervisord still calls it RUNNING. A program that should run and does not (stopped,
FATAL, restarting: the watchdog's StackHealth, common/health.py) is a DOWN row, metrics or not.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import msgspec

from common.board import describe
from common.bus import Subscriber
from common.config import ConfigError, load_config
from common.health import HealthView
from common.messages import Metrics, StackHealth
from common.prometheus import BOARD_KEYS

COLUMNS = ("service", "pid", "fps", "p50_ms", "p99_ms", "in", "out", "dropped", "errors", "cpu%", "rss_mb", "state")


def row(m: Metrics, now: float, silent_after: float) -> list[str]:
    state = "SILENT" if now - m.t > silent_after else "ok"
    return [m.service, str(m.pid), f"{m.fps:.1f}", f"{m.p50_ms:.1f}", f"{m.p99_ms:.1f}", str(m.frames_in),
            str(m.frames_out), str(m.dropped), str(m.errors), f"{m.cpu_percent:.0f}",
            f"{m.rss_bytes / 2**20:.0f}", state]


def down_row(program: str, why: str) -> list[str]:
    return [program] + ["-"] * (len(COLUMNS) - 2) + [f"DOWN ({why})"]


def render(latest: dict[str, Metrics], silent_after: float, down: dict[str, str] | None = None) -> str:
    """The table; `down`: program -> why, from HealthView.down() (a program's metrics row, if any, says DOWN)."""
    now = time.time()
    down = down or {}
    rows = [list(COLUMNS)] + [row(m, now, silent_after) if service not in down else
                              row(m, now, silent_after)[:-1] + [f"DOWN ({down[service]})"]
                              for service, m in sorted(latest.items())]
    rows += [down_row(program, why) for program, why in sorted(down.items()) if program not in latest]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines += board_lines(latest)
    lines += latency_lines(latest)
    dog = latest.get("watchdog")
    if dog is not None:
        silent = sorted(k[len("silent_"):] for k, v in dog.extra.items() if k.startswith("silent_") and k != "silent_stages" and v)
        lines.append(f"watchdog: {dog.extra.get('restarts', 0):g} restarts; silent: {', '.join(silent) or 'none'}; "
                     f"down: {', '.join(f'{p} ({why})' for p, why in sorted(down.items())) or 'none'}")
    return "\n".join(lines)


def board_lines(latest: dict[str, Metrics]) -> list[str]:
    """Board health as capture reads it (capture runs on the board; else the first stage that has it)."""
    for _, m in sorted(latest.items(), key=lambda kv: (kv[0] != "capture", kv[0])):
        health = {k: v for k, v in m.extra.items() if k in BOARD_KEYS}
        if health:
            return [f"board: {describe(health)}"]
    return ["board: no temperature, clock or throttle data exposed"]


def latency_lines(latest: dict[str, Metrics]) -> list[str]:
    """Per-frame latency between pipeline points, p50/p99 ms, from each stage's metrics."""
    out = []
    for service, m in sorted(latest.items()):
        if m.latency_ms:
            out.append(f"latency {service}: " + ", ".join(
                f"{path.replace('_to_', '->')} {lat.p50_ms:.1f}/{lat.p99_ms:.1f}"
                for path, lat in sorted(m.latency_ms.items())) + " ms (p50/p99)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facetrack monitor", description=__doc__)
    parser.add_argument("--config")
    parser.add_argument("--json", action="store_true", help="one JSON object per metrics or health message")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"facetrack monitor: {exc}", file=sys.stderr)
        return 2
    sub = Subscriber(cfg.bus.subscribe, [Metrics.TOPIC, StackHealth.TOPIC], hwm=1000)
    health = HealthView(cfg)
    silent_after = cfg.watchdog.silent_periods * cfg.monitor.interval_s  # the watchdog's rule
    latest: dict[str, Metrics] = {}
    end = time.monotonic() + args.seconds if args.seconds else None
    next_draw = 0.0
    try:
        while end is None or time.monotonic() < end:
            msg = sub.recv(timeout_ms=250)
            if isinstance(msg, StackHealth):
                health.update(msg)
                if args.json:
                    print(json.dumps(msgspec.to_builtins(msg)), flush=True)
            elif msg is not None:
                latest[msg.service] = msg
                if args.json:
                    print(json.dumps(msgspec.to_builtins(msg)), flush=True)
            if not args.json and time.monotonic() >= next_draw:
                next_draw = time.monotonic() + cfg.monitor.interval_s
                sys.stdout.write("\x1b[H\x1b[2J" + render(latest, silent_after, health.down()) + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0
