"""`facetrack bench soak --minutes M`: the whole stack for a long while; RSS and fps over time.

Runs the shipped stack under supervisord (demo clip by default, in a run directory of its
own, the recorder attached) and samples every `--interval` seconds, per supervisord program:
its pid (a restart shows as a new pid), RSS and CPU % (psutil), and the fps of its stage
(from its Metrics on the bus). Prints one JSON object: the samples, and per program the RSS
at the start (after `--warmup`) and end, its maximum, the growth and the fitted growth rate
(MB per hour, least squares over the samples), restarts, and the stage's fps (mean, min);
also its anonymous memory (RssAnon: the heap, without the library code and the shared frame
ring that RSS also counts, pages that come and go with use but never leak), and its PSS and
USS (/proc/PID/smaps_rollup): RSS counts every shared library and the frame ring once per
process, so the RSS of six processes adds up to far more than the stack takes; PSS splits each
shared page among the processes mapping it (the PSS sum over the stack is what it costs the
board) and USS is what the process alone holds (what stopping it would free).
The recorder runs with a small `--max-record-mb` (sink.max_record_mb), so its segments
rotate and retention prunes them all along: each sample also has the size of the record
directory (sink.record_dir, every file under it), and the summary its maximum, final size
and whether it stayed bounded: at most the limit plus RECORD_SLACK of it (the directory
grows by what is written between two prunes, every sink.retention_check_s), with the
recorder's own counters (files deleted, frames not recorded).
Start and end are medians over the first and last minute: RSS swings for a few seconds
while many faces are tracked at once (the tracker's by ~15 %), and one sample taken in
such a swing would read as growth. A 30-minute soak is a benchmark outside CI: a leak shows
as steady growth, not a step.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from common.bus import Subscriber
from common.messages import Metrics
from facetrack.stack import Stack

log = logging.getLogger("bench.soak")
PIPELINE = ("broker", "capture", "detector", "tracker", "sink", "watchdog")
EDGE_S = 60.0  # the start and end RSS are medians over this many seconds
RECORD_SLACK = 0.1  # the record directory may exceed its limit by this fraction between two prunes
RETENTION_CHECK_S = 1.0  # sink.retention_check_s of the run: a small limit is overshot by ~1 s of writing, not 5
RECORDER_COUNTERS = ("record_bytes", "record_files", "retention_files_deleted", "retention_bytes_deleted",
                     "recorded", "frames_not_recorded", "disk_full")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _edges(t: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Medians of the first and last EDGE_S seconds."""
    return float(np.median(values[t <= t[0] + EDGE_S])), float(np.median(values[t >= t[-1] - EDGE_S]))


def _summary(samples: list[dict], programs: list[str]) -> dict:
    out = {}
    for program in programs:
        rows = [(s["t_s"], s["rss_mb"][program], s["pid"][program], s["fps"].get(program),
                 s.get("anon_mb", {}).get(program)) for s in samples if program in s["rss_mb"]]
        if not rows:
            continue
        t = np.array([r[0] for r in rows])
        rss = np.array([r[1] for r in rows])
        fps = [r[3] for r in rows if r[3] is not None]
        slope = float(np.polyfit(t, rss, 1)[0]) * 3600 if len(rows) >= 3 and np.ptp(t) > 0 else None
        start, end = _edges(t, rss)
        out[program] = {
            "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1),
            "rss_max_mb": round(float(rss.max()), 1), "growth_mb": round(end - start, 1),
            "growth_pct": round(100 * (end - start) / start, 2),
            "growth_mb_per_hour": None if slope is None else round(slope, 2),
            "restarts": len({r[2] for r in rows}) - 1,
            "fps_mean": round(float(np.mean(fps)), 2) if fps else None,
            "fps_min": round(float(np.min(fps)), 2) if fps else None,
        }
        for kind in ("pss", "uss"):
            values = [s.get(f"{kind}_mb", {}).get(program) for s in samples if program in s["rss_mb"]]
            if values and all(v is not None for v in values):
                k_start, k_end = _edges(t, np.array(values))
                out[program].update({f"{kind}_start_mb": round(k_start, 1), f"{kind}_end_mb": round(k_end, 1)})
        if all(r[4] is not None for r in rows):
            a_start, a_end = _edges(t, np.array([r[4] for r in rows]))
            out[program].update(anon_start_mb=round(a_start, 1), anon_end_mb=round(a_end, 1),
                                anon_growth_pct=round(100 * (a_end - a_start) / a_start, 2))
    return out


def _dir_mb(root: Path) -> float:
    """The size of every file under `root`, as retention counts it (files vanish while we walk)."""
    total = 0
    for top, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:
                pass
    return total / 2**20


def _record_summary(samples: list[dict], limit_mb: float, recorder: Metrics | None) -> dict:
    sizes = [s["record_mb"] for s in samples if "record_mb" in s]
    out = {"limit_mb": limit_mb, "max_mb": round(max(sizes), 3) if sizes else None,
           "final_mb": round(sizes[-1], 3) if sizes else None,
           "bounded": bool(sizes) and (limit_mb == 0 or max(sizes) <= limit_mb * (1 + RECORD_SLACK))}
    if recorder is not None:
        out.update({k: recorder.extra[k] for k in RECORDER_COUNTERS if k in recorder.extra})
    return out


def _pss_last(samples: list[dict]) -> dict[str, float]:
    """Each program's PSS in the last sample, and their sum: what the stack takes of the board's RAM."""
    last = samples[-1].get("pss_mb", {}) if samples else {}
    return {**last, "total": round(sum(last.values()), 1)} if last else {}


def _rss_anon_mb(pid: int) -> float | None:
    """The process's private anonymous memory (its heap, not library code or the shared
    frame ring, which RSS also counts), or None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("RssAnon:")), None)
    except OSError:
        return None


def pss_uss_mb(pid: int) -> tuple[float, float] | None:
    """(PSS, USS) of a process in MB from /proc/PID/smaps_rollup (USS: its private pages,
    clean and dirty), or None where the kernel does not provide it."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Private_Clean", "Private_Dirty"):
                    fields[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return None
    if "Pss" not in fields:
        return None
    return fields["Pss"] / 1024, (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024


def _stack_pss(samples: list[dict]) -> dict:
    """The PSS summed over the stack's processes: start and end (medians of the edges), maximum."""
    rows = [(s["t_s"], sum(s["pss_mb"].values())) for s in samples if s.get("pss_mb")]
    if not rows:
        return {}
    t, total = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    start, end = _edges(t, total)
    return {"pss_sum_start_mb": round(start, 1), "pss_sum_end_mb": round(end, 1),
            "pss_sum_max_mb": round(float(total.max()), 1)}


def soak(args: argparse.Namespace, run_dir: Path) -> dict:
    overrides = {
        "stack": {"id": f"soak{os.getpid()}"},
        "capture": {"source": args.source, "loop": True},
        "sink": {"http_port": _free_port(), "privacy_port": _free_port(), "max_record_mb": args.max_record_mb,
                 "retention_check_s": RETENTION_CHECK_S},
    }
    sinks = [s for s in args.sinks.split(",") if s]
    with Stack(run_dir, overrides, autostart={s: True for s in sinks}) as stack:
        programs = [*PIPELINE, *sinks]
        record_dir = Path(stack.config.sink.record_dir)
        stack.start(wait_for=tuple(programs), timeout=120)
        sub = Subscriber(stack.config.bus.subscribe, [Metrics.TOPIC], hwm=10000)
        latest: dict[int, Metrics] = {}  # by pid: a program's stage, whatever its service name

        def pump(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                msg = sub.recv(timeout_ms=100)
                if msg is not None:
                    latest[msg.pid] = msg

        log.info("stack up; warming up %.0f s", args.warmup)
        pump(args.warmup)
        samples: list[dict[str, Any]] = []
        procs: dict[int, psutil.Process] = {}
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        try:
            while True:
                status = stack.status()
                sample: dict[str, Any] = {"t_s": round(time.monotonic() - t0, 1), "pid": {}, "rss_mb": {}, "anon_mb": {},
                          "pss_mb": {}, "uss_mb": {}, "cpu_percent": {}, "fps": {}}
                for program in programs:
                    state, pid = status.get(program, ("MISSING", None))
                    if state != "RUNNING" or not pid:
                        continue
                    try:
                        proc = procs.get(pid) or procs.setdefault(pid, psutil.Process(pid))
                        sample["rss_mb"][program] = round(proc.memory_info().rss / 2**20, 2)
                        anon = _rss_anon_mb(pid)
                        if anon is not None:
                            sample["anon_mb"][program] = round(anon, 2)
                        pss_uss = pss_uss_mb(pid)
                        if pss_uss is not None:
                            sample["pss_mb"][program], sample["uss_mb"][program] = (round(v, 2) for v in pss_uss)
                        sample["cpu_percent"][program] = round(proc.cpu_percent(None), 1)
                    except psutil.Error:
                        continue
                    sample["pid"][program] = pid
                    m = latest.get(pid)
                    if m is not None and time.time() - m.t < 5:
                        sample["fps"][program] = round(m.fps, 2)
                sample["record_mb"] = round(_dir_mb(record_dir), 3)
                samples.append(sample)
                if time.monotonic() >= end:
                    break
                log.info("%.0f s: rss %s, records %.2f MB", sample["t_s"],
                         {p: round(v) for p, v in sample["rss_mb"].items()}, sample["record_mb"])
                pump(min(args.interval, max(0.0, end - time.monotonic())))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop early and still report what was sampled
            log.info("interrupted after %d samples", len(samples))
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second one must not cut the shutdown short
                signal.signal(sig, signal.SIG_IGN)
        sub.close()
        recorder_pid = samples[-1]["pid"].get("sink-recorder") if samples else None
        record = _record_summary(samples, args.max_record_mb, latest.get(recorder_pid) if recorder_pid else None)
    return {"source": args.source, "minutes": args.minutes, "interval_s": args.interval, "warmup_s": args.warmup,
            "cpu_count": os.cpu_count(), "programs": _summary(samples, programs), "stack": _stack_pss(samples),
            "record_dir": record, "pss_mb_last": _pss_last(samples),
            "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facetrack bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the first sample (model load)")
    parser.add_argument("--source", default="demo://")
    parser.add_argument("--sinks", default="sink-recorder", help="extra sink programs to attach, comma separated")
    parser.add_argument("--max-record-mb", type=float, default=2.0,
                        help="sink.max_record_mb for the run: small, so retention works all along (0 = no limit)")
    parser.add_argument("--run-dir", type=Path, help="keep the run directory here (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops early too, and stops the stack
    if args.run_dir:
        result = soak(args, args.run_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="facetrack-soak-") as tmp:
            result = soak(args, Path(tmp))
    text = json.dumps(result)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
