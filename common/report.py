"""Figures as markdown: a table, and the line that says where it came from.

A figure means nothing without the command, the CPU and the day it was measured on, and a
load average says how busy the machine was meanwhile; every `--markdown` report ends with
that line, so a table pasted into the docs carries it.
"""
from __future__ import annotations

import datetime
import os
import shlex
import sys
from pathlib import Path
from typing import Iterable


def cpu_name(path: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (x86 `model name`, else aarch64's `Model` / `Hardware`) or the machine
    type, with its widest vector ISA (AVX-512, AVX2; aarch64 dot product)."""
    try:
        text = path.read_text()
    except OSError:
        text = ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        found.setdefault(key.strip().lower(), value.strip())
    name = found.get("model name") or found.get("model") or found.get("hardware") or os.uname().machine
    flags = set((found.get("flags") or found.get("features") or "").split())
    isa = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("asimddp", "NEON dot product"))
                if flag in flags), "")
    return f"{name}, {isa}" if isa else name


def provenance(command: str, argv: Iterable[str] | None) -> str:
    """`facetrack bench detector --variant full` · CPU, logical CPUs · load averages · UTC time.

    `argv`: the command's arguments as its main() got them (None: this process's own).
    """
    argv = sys.argv[1:] if argv is None else argv
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"`{shlex.join([*command.split(), *argv])}` on {cpu_name()} ({os.cpu_count()} logical CPUs), "
            f"load average {load} (1/5/15 min) at the end, {when}")


def table(columns: list[str], rows: Iterable[Iterable[object]], numeric_from: int = 1) -> str:
    """A markdown table; columns from `numeric_from` on are right-aligned. None prints as —."""
    rule = ["---" if i < numeric_from else "---:" for i in range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(rule) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("—" if v is None else str(v) for v in row) + " |")
    return "\n".join(lines)
