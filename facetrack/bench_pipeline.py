"""`facetrack bench pipeline`: the whole stack under supervisord, measured from outside.

Runs the shipped stack on the demo clip (640x480 by default), or with `--faces 1,2,4,8` once
per face count on the `faces://N` scene, in a run directory of its own, with the recorder
sink attached, and prints one JSON object: fps per stage (from each
stage's metrics), capture→sink latency p50/p99 matched by frame id (from the recorder's
per-frame t_capture and t_sink), frames dropped on the way, and CPU % / RSS per process
(psutil over the measured window), and how closely capture paced the file (`capture_pacing`:
the t_capture rate against the rate it paced at, and its late frames: what the functional
tests no longer assert). With `--faces` the JSON holds one such object per face
count, and a markdown table of them goes to stderr. `--markdown` prints markdown tables (with
the command, the CPU and the date) instead of JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from common.bus import Subscriber
from common.messages import Frame, Metrics, Tracks
from common.report import provenance, table
from facetrack.stack import Stack
from services.sinks.record_files import read_records
from services.sources.composed_faces import MAX_FACES

log = logging.getLogger("bench.pipeline")
STAGES = ("broker", "capture", "detector", "tracker", "sink", "sink-recorder")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    arr = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2)}


def _recorded(run_dir: Path) -> list[dict]:
    rows = []
    for path in run_dir.glob("records/**/tracks.jsonl"):
        rows += read_records(path.parent)  # every segment; an unterminated last line skipped
    return rows


def _pacing(stamps: list[float], nominal: float | None, late: float | None) -> dict:
    """How closely capture kept a file's rate: frames per second of t_capture over the window
    against the rate it paced at, and the frames it released late (its metrics' `late`)."""
    measured = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    return {"nominal_fps": nominal, "measured_fps": None if measured is None else round(measured, 2),
            "ratio": None if measured is None or not nominal else round(measured / nominal, 4), "late": late}


def measure(args: argparse.Namespace, run_dir: Path) -> dict:
    overrides = {
        "stack": {"id": f"bench{os.getpid()}"},
        "capture": {"source": args.source, "width": args.width, "height": args.height, "loop": True},
        "sink": {"http_port": _free_port()},
        "tracker": {"kind": args.tracker},
    }
    with Stack(run_dir, overrides, autostart={"sink-recorder": True}) as stack:
        stack.start(wait_for=STAGES)
        sub = Subscriber(stack.config.bus.subscribe, [Metrics.TOPIC, Frame.TOPIC, Tracks.TOPIC], hwm=10000)
        log.info("stack up; warming up %.0f s", args.warmup)
        time.sleep(args.warmup)
        pids = {name: pid for name, (state, pid) in stack.status().items() if pid}
        procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        for p in procs.values():
            p.cpu_percent(None)
        sub.drain()
        start_wall = time.time()
        frames, tracked, metrics, stamps = set(), set(), {}, []
        deadline = time.monotonic() + args.seconds
        next_log = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = sub.recv(timeout_ms=200)
            if isinstance(msg, Frame):
                frames.add(msg.frame_id)
                stamps.append(msg.t_capture)
            elif isinstance(msg, Tracks):
                tracked.add(msg.frame_id)
            elif isinstance(msg, Metrics):
                metrics[msg.service] = msg
            if time.monotonic() >= next_log:
                next_log += 5
                log.info("%.0f s left: %d frames captured, %d tracked", deadline - time.monotonic(),
                         len(frames), len(tracked))
        cpu = {name: round(p.cpu_percent(None), 1) for name, p in procs.items()}
        rss = {name: p.memory_info().rss for name, p in procs.items()}
        end_wall = time.time()
        sub.close()
        paced = re.search(r"pacing at ([\d.]+) fps", stack.log("capture"))
    rows = [r for r in _recorded(run_dir) if start_wall <= r["t_capture"] <= end_wall]
    latency = [r["t_sink"] - r["t_capture"] for r in rows]
    at_tracker = [r["t_tracked"] - r["t_capture"] for r in rows]
    captured = len(frames)
    return {
        "source": args.source, "frame": [args.height, args.width], "seconds": args.seconds,
        "tracker": args.tracker, "cpu_count": os.cpu_count(),
        "fps": {name: round(m.fps, 2) for name, m in sorted(metrics.items())},
        "stage_ms": {name: {"p50": round(m.p50_ms, 2), "p99": round(m.p99_ms, 2)} for name, m in sorted(metrics.items())},
        "latency_capture_to_sink": _percentiles(latency),
        "latency_capture_to_tracker": _percentiles(at_tracker),
        "frames": {"captured": captured, "tracked": len(tracked & frames), "recorded": len(rows),
                   "dropped_before_tracker": captured - len(tracked & frames),
                   "dropped_before_sink": captured - len(rows)},
        "stage_dropped": {name: m.dropped for name, m in sorted(metrics.items())},
        "detector_calls": metrics["detector"].frames_out if "detector" in metrics else 0,
        "capture_pacing": _pacing(stamps, float(paced.group(1)) if paced else None,
                                  metrics["capture"].extra.get("late") if "capture" in metrics else None),
        "cpu_percent": cpu,
        "rss_mb": {name: round(v / 2**20, 1) for name, v in rss.items()},
    }


def faces_table(results: list[dict]) -> str:
    """Markdown: per face count, tracker fps, frames dropped before the tracker, capture→sink
    latency, CPU % per process."""
    names = sorted({name for r in results for name in r["cpu_percent"]})
    head = ("| faces | tracker fps | dropped before tracker | capture→sink p50 / p99 ms | tracker ms p50 / p99 | "
            + " | ".join(f"CPU % {n}" for n in names) + " |")
    rule = "|" + "---:|" * (5 + len(names))
    rows = []
    for r in results:
        frames, lat, stage = r["frames"], r["latency_capture_to_sink"], r["stage_ms"].get("tracker", {})
        dropped = f"{frames['dropped_before_tracker']} / {frames['captured']}"
        rows.append(f"| {r['faces']} | {r['fps'].get('tracker', 0)} | {dropped} | {lat['p50_ms']} / {lat['p99_ms']} | "
                    f"{stage.get('p50')} / {stage.get('p99')} | "
                    + " | ".join(str(r["cpu_percent"].get(n, "")) for n in names) + " |")
    return "\n".join([head, rule, *rows])


def stages_markdown(r: dict) -> str:
    """Markdown for one run: a line of totals, then per process fps, stage time, CPU % and RSS."""
    frames, lat = r["frames"], r["latency_capture_to_sink"]
    names = sorted(set(r["cpu_percent"]) | set(r["fps"]))
    rows = [(n, r["fps"].get(n), r["stage_ms"].get(n, {}).get("p50"), r["stage_ms"].get(n, {}).get("p99"),
             r["cpu_percent"].get(n), r["rss_mb"].get(n)) for n in names]
    return "\n".join([
        f"`{r['source']}`, {r['frame'][1]}x{r['frame'][0]}, tracker {r['tracker']}, {r['seconds']:g} s: "
        f"{frames['captured']} frames captured, {frames['dropped_before_tracker']} dropped before the tracker, "
        f"{frames['dropped_before_sink']} before the recorder; {r['detector_calls']} detector calls; "
        f"capture→sink p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms", "",
        table(["process", "fps", "stage ms p50", "stage ms p99", "CPU %", "RSS MB"], rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facetrack bench pipeline", description=__doc__)
    parser.add_argument("--source", default="demo://")
    parser.add_argument("--faces", type=_counts, metavar="N[,N...]",
                        help="instead of --source: one run per count on faces://N, N moving public-domain faces")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--tracker", default="kcf", choices=["kcf", "csrt", "mosse", "none"])
    parser.add_argument("--run-dir", type=Path, help="keep the run directory here (default: a temporary one)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables (with command, CPU and date) instead of JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.faces:
        result = _measure_in(args, args.run_dir)
        print(f"{stages_markdown(result)}\n\n{provenance(parser.prog, argv)}" if args.markdown else json.dumps(result))
        return 0
    by_faces = {}
    for count in args.faces:
        log.info("faces://%d", count)
        run_dir = args.run_dir / f"faces-{count}" if args.run_dir else None
        by_faces[count] = {"faces": count, **_measure_in(argparse.Namespace(**{**vars(args), "source": f"faces://{count}"}),
                                                          run_dir)}
    if args.markdown:
        print(f"{faces_table(list(by_faces.values()))}\n\n{provenance(parser.prog, argv)}")
        return 0
    print(faces_table(list(by_faces.values())), file=sys.stderr)
    print(json.dumps({"by_faces": by_faces}))
    return 0


def _measure_in(args: argparse.Namespace, run_dir: Path | None) -> dict:
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        return measure(args, run_dir)
    with tempfile.TemporaryDirectory(prefix="facetrack-bench-") as tmp:
        return measure(args, Path(tmp))


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected face counts like 1,2,4,8, got {text!r}") from None
    if not all(1 <= n <= MAX_FACES for n in counts):
        raise argparse.ArgumentTypeError(f"face counts are 1 to {MAX_FACES}, got {text!r}")
    return counts
