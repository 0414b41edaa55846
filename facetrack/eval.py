"""`facetrack eval SEQ_DIR...`: the live TrackManager on MOTChallenge sequences, scored by TrackEval.

Frames are read from disk; the detector (models.runtime, the real one) runs synchronously on
every Nth frame as the manager asks, so in eval a detection is always for the current frame.
Scores: HOTA, MOTA, IDF1, ID switches (TrackEval's MotChallenge2DBox on files written to a
temporary MOT layout), detector calls, and CPU ms per frame of detector and tracker
(process CPU time, OpenCV and the detector held to one thread as on the Pi's one core per
service).

Fair scoring of face boxes against head boxes. The OTB ground truth boxes the whole head,
BlazeFace the face (a perfect detection has IoU ~0.5 with gt), which would make MOTA/IDF1 at
TrackEval's IoU 0.5 a coin toss. Published boxes are therefore mapped to head boxes by one
fixed affine rule (`HEAD_FROM_FACE`: centre shift and size ratios in face-box units),
fitted once on OTB-FaceOcc1-A (`--fit-head`: medians over frames where the detector's
face centre lies in the gt box) and applied unchanged to every sequence and tracker. The rule
is not re-fitted per sequence, so Girl (a different person, pose and resolution) shows how
well it transfers. The tracker itself never sees it. Only confirmed tracks are scored
(a "lost" track's frozen box is the service's to show or not).
"""
from __future__ import annotations

import argparse
import configparser
import contextlib
import dataclasses
import io
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.config import ROOT, Config, TrackerConfig, load_config
from common.threads import limit_threads
from common.tracking import FrameDetections, TrackManager
from models.runtime import ModelFileError
from models.runtime import load_detector as load_face_detector

log = logging.getLogger(__name__)

# (dx, dy, sx, sy): head centre = face centre + (dx*w, dy*h); head size = (sx*w, sy*h).
# Fitted with `facetrack eval --fit-head .../OTB-FaceOcc1-A` (full-range BlazeFace, tvm, 298 frames).
HEAD_FROM_FACE = (0.03, 0.007, 1.148, 1.572)
GRID_KINDS = ("kcf", "csrt", "mosse", "none")
GRID_INTERVALS = ("1", "2", "3", "5", "10", "adaptive")


@dataclass
class Sequence:
    name: str
    frames: list[Path]
    gt: np.ndarray  # MOT rows: frame, id, left, top, width, height, ...
    path: Path

    @classmethod
    def load(cls, path: Path) -> "Sequence":
        ini = configparser.ConfigParser()
        ini.read(path / "seqinfo.ini")
        info = ini["Sequence"]
        frames = [path / info.get("imDir", "img1") / f"{i:06d}{info.get('imExt', '.jpg')}"
                  for i in range(1, int(info["seqLength"]) + 1)]
        return cls(info.get("name", path.name), frames, np.loadtxt(path / "gt/gt.txt", delimiter=",", ndmin=2), path)


@dataclass
class RunResult:
    """One tracker setting on one sequence: MOT rows (face boxes) and costs."""
    rows: list[tuple[int, int, float, float, float, float, float]]
    frames: int
    detector_calls: int
    detector_cpu_s: float
    tracker_cpu_s: float
    counters: dict[str, int]


def face_to_head(box: np.ndarray) -> np.ndarray:
    dx, dy, sx, sy = HEAD_FROM_FACE
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * h
    return np.array([cx - sx * w / 2, cy - sy * h / 2, cx + sx * w / 2, cy + sy * h / 2])


def tracker_config(base: TrackerConfig, kind: str, interval: str) -> TrackerConfig:
    """`interval` is a fixed N or "adaptive" (between the config's bounds)."""
    if interval == "adaptive":
        return dataclasses.replace(base, kind=kind, adaptive=True)
    n = int(interval)
    return dataclasses.replace(base, kind=kind, adaptive=False, interval_min=n, interval_max=n)


def run_sequence(images: list[np.ndarray], detector, cfg: TrackerConfig) -> RunResult:
    """The manager over one sequence; the detector runs when the manager's interval says so."""
    manager = TrackManager(cfg)
    rows, calls, det_s, trk_s, last = [], 0, 0.0, 0.0, None
    for frame_id, image in enumerate(images, start=1):
        detections = None
        if last is None or frame_id - last >= manager.detect_interval:
            t0 = time.process_time()
            found = detector.detect(image)
            det_s += time.process_time() - t0
            calls, last = calls + 1, frame_id
            detections = FrameDetections(frame_id, np.asarray(found.boxes, np.float64).reshape(-1, 4),
                                         np.asarray(found.scores, np.float64).reshape(-1))
        t0 = time.process_time()
        tracks = manager.step(frame_id, image, detections)
        trk_s += time.process_time() - t0
        rows += [(frame_id, t.id, *t.box, t.score) for t in tracks if t.state == "confirmed"]
    return RunResult(rows, len(images), calls, det_s, trk_s, dict(manager.counters))


def _write_mot(path: Path, rows) -> None:
    """Tracker rows in MOT format, face boxes mapped to heads, 1-based pixels like the gt."""
    lines = []
    for frame, tid, x1, y1, x2, y2, score in rows:
        hx1, hy1, hx2, hy2 = face_to_head(np.array([x1, y1, x2, y2]))
        lines.append(f"{frame},{tid},{hx1 + 1:.2f},{hy1 + 1:.2f},{hx2 - hx1:.2f},{hy2 - hy1:.2f},{score:.3f},-1,-1,-1")
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def score(results: dict[str, dict[str, RunResult]], sequences: list[Sequence]) -> dict[str, dict[str, dict]]:
    """TrackEval HOTA/CLEAR/Identity for every setting: {setting: {seq | "COMBINED": metrics}}."""
    import trackeval  # imported here: only eval needs it

    with tempfile.TemporaryDirectory(prefix="facetrack-eval-") as tmp:
        gt_dir, trk_dir = Path(tmp, "gt"), Path(tmp, "trackers")
        for seq in sequences:
            (gt_dir / seq.name / "gt").mkdir(parents=True)
            shutil.copy(seq.path / "gt/gt.txt", gt_dir / seq.name / "gt/gt.txt")
            shutil.copy(seq.path / "seqinfo.ini", gt_dir / seq.name / "seqinfo.ini")
        for setting, per_seq in results.items():
            (trk_dir / setting / "data").mkdir(parents=True)
            for name, result in per_seq.items():
                _write_mot(trk_dir / setting / "data" / f"{name}.txt", result.rows)
        dataset = trackeval.datasets.MotChallenge2DBox({
            "GT_FOLDER": str(gt_dir), "TRACKERS_FOLDER": str(trk_dir), "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {s.name: len(s.frames) for s in sequences}, "TRACKERS_TO_EVAL": list(results),
            "DO_PREPROC": False, "PRINT_CONFIG": False})
        evaluator = trackeval.Evaluator({
            "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
            "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None})
        metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
                   trackeval.metrics.Identity({"PRINT_CONFIG": False})]
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter):  # TrackEval prints progress; keep stdout for the table
            output, _ = evaluator.evaluate([dataset], metrics)
        log.debug("trackeval: %s", chatter.getvalue())
    out = {}
    for setting, per_seq in output["MotChallenge2DBox"].items():
        out[setting] = {}
        for seq, by_class in per_seq.items():
            m = by_class["pedestrian"]
            out[setting]["COMBINED" if seq == "COMBINED_SEQ" else seq] = {
                "HOTA": 100 * float(np.mean(m["HOTA"]["HOTA"])), "IDF1": 100 * float(m["Identity"]["IDF1"]),
                "MOTA": 100 * float(m["CLEAR"]["MOTA"]), "IDSW": int(m["CLEAR"]["IDSW"])}
    return out


def _summary(setting: str, kind: str, interval: str, per_seq: dict[str, RunResult], scores: dict) -> dict:
    frames = sum(r.frames for r in per_seq.values())
    return {
        "setting": setting, "tracker": kind, "interval": interval, **scores[setting]["COMBINED"],
        "detector_calls": sum(r.detector_calls for r in per_seq.values()),
        "detector_ms_per_frame": 1000 * sum(r.detector_cpu_s for r in per_seq.values()) / frames,
        "tracker_ms_per_frame": 1000 * sum(r.tracker_cpu_s for r in per_seq.values()) / frames,
        "frames": frames,
        "sequences": {name: {**scores[setting][name], "detector_calls": r.detector_calls, "counters": r.counters}
                      for name, r in per_seq.items()},
    }


def table(rows: list[dict]) -> str:
    """Markdown table of the combined scores."""
    head = ("| tracker | interval | HOTA | IDF1 | MOTA | IDSW | detector calls | detector ms/frame "
            "| tracker ms/frame | total ms/frame |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    body = [f"| {r['tracker']} | {r['interval']} | {r['HOTA']:.1f} | {r['IDF1']:.1f} | {r['MOTA']:.1f} | {r['IDSW']} "
            f"| {r['detector_calls']} | {r['detector_ms_per_frame']:.2f} | {r['tracker_ms_per_frame']:.2f} "
            f"| {r['detector_ms_per_frame'] + r['tracker_ms_per_frame']:.2f} |" for r in rows]
    return "\n".join([head, *body])


def load_detector(cfg: Config, backend: str | None):
    """The real detector, set up as the detector service sets it up (config's detector section)."""
    model_dir = Path(cfg.detector.model_dir)
    return load_face_detector(variant=cfg.detector.variant, backend=backend or cfg.detector.backend,
                model_dir=model_dir if model_dir.is_absolute() else ROOT / model_dir,
                score_threshold=cfg.detector.score_threshold, nms_iou=cfg.detector.nms_iou,
                num_threads=cfg.detector.threads)


def fit_head(sequence: Sequence, images: list[np.ndarray], detector) -> dict[str, float]:
    """Medians of the head-box/face-box relation where the face centre is inside the gt box."""
    samples = []
    for row, image in zip(sequence.gt, images):
        gx, gy, gw, gh = row[2] - 1, row[3] - 1, row[4], row[5]
        for x1, y1, x2, y2 in np.asarray(detector.detect(image).boxes, np.float64).reshape(-1, 4):
            w, h, cx, cy = x2 - x1, y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2
            if gx <= cx <= gx + gw and gy <= cy <= gy + gh:
                samples.append(((gx + gw / 2 - cx) / w, (gy + gh / 2 - cy) / h, gw / w, gh / h))
    dx, dy, sx, sy = np.median(np.array(samples), axis=0)
    return {"dx": round(float(dx), 3), "dy": round(float(dy), 3), "sx": round(float(sx), 3),
            "sy": round(float(sy), 3), "samples": len(samples)}


def _interval(text: str) -> str:
    if text == "adaptive" or (text.isdigit() and int(text) > 0):
        return text
    raise argparse.ArgumentTypeError(f"expected a positive integer or 'adaptive', got {text!r}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facetrack eval", description=__doc__.splitlines()[0])
    parser.add_argument("sequences", nargs="+", type=Path, help="MOTChallenge sequence folders (img1/, gt/gt.txt, seqinfo.ini)")
    parser.add_argument("--tracker", choices=GRID_KINDS, help="default: tracker.kind of the config")
    parser.add_argument("--interval", type=_interval, help="detector every N frames, or 'adaptive' (default: the config's)")
    parser.add_argument("--grid", action="store_true", help=f"every tracker {GRID_KINDS} x interval {GRID_INTERVALS}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--config", help="stack config (default: configs/default.yaml)")
    parser.add_argument("--backend", choices=("tvm", "torchscript", "onnxruntime", "torch"), help="detector backend (default: the config's)")
    parser.add_argument("--fit-head", action="store_true", help="fit the face->head box rule on the (first) sequence and print it")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    limit_threads(cfg.tracker.threads)  # the detector below gets detector.threads, as live
    sequences = [Sequence.load(p) for p in args.sequences]
    try:
        detector = load_detector(cfg, args.backend)
    except (ModelFileError, ValueError) as exc:  # one line each: missing/corrupt model, bad variant
        log.error("cannot load the detector: %s", exc)
        return 1
    if args.fit_head:
        images = [cv2.imread(str(p)) for p in sequences[0].frames]
        print(json.dumps(fit_head(sequences[0], images, detector)))
        return 0
    default_interval = "adaptive" if cfg.tracker.adaptive else str(cfg.detector.every_n)  # as services/tracker.py
    settings = ([(k, i) for k in GRID_KINDS for i in GRID_INTERVALS] if args.grid
                else [(args.tracker or cfg.tracker.kind, args.interval or default_interval)])
    results: dict[str, dict[str, RunResult]] = {f"{k}-{i}": {} for k, i in settings}
    for seq in sequences:
        images = [cv2.imread(str(p)) for p in seq.frames]
        for kind, interval in settings:
            result = run_sequence(images, detector, tracker_config(cfg.tracker, kind, interval))
            results[f"{kind}-{interval}"][seq.name] = result
            log.info("%s %s-%s: %d detector calls, %d tracks started", seq.name, kind, interval,
                     result.detector_calls, result.counters["tracks_started"])
    scores = score(results, sequences)
    rows = [_summary(f"{k}-{i}", k, i, results[f"{k}-{i}"], scores) for k, i in settings]
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
