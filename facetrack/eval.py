"""`facetrack eval SEQ_DIR...`: the live TrackManager and the baselines on MOTChallenge sequences, scored by TrackEval.

One run scores facetrack's setting from the config beside the baselines, through one
scorer on the same detector outputs (the detector runs once per frame and every setting
reads the frames it asked for, `eval_replay`): the article's loop (KCF, detector every 5
frames, `kcf-5`), the detector on every frame (`none-1`) and ByteTrack (roboflow `trackers`,
`eval_bytetrack`). Detections reach each setting as late as live (`--latency-ms`, default the
detector's measured median latency), and a detector busy with one frame starts no other.
Scores: HOTA (DetA, AssA), IDF1, MOTA, ID switches, fragmentations, per sequence, per group
(the name up to its first '-': OTB, SYN) and over all; detector calls and CPU ms per frame of
detector and tracker (process time; thread pools as the services set them).

Face boxes against head boxes. The OTB ground truth boxes the whole head, BlazeFace the face
(a perfect detection has IoU ~0.5 with gt). For head-boxed sequences only (`--boxes`, or
`boxes=head` in a sequence's seqinfo.ini) published boxes are mapped to head boxes by one
fixed affine rule (`HEAD_FROM_FACE`: centre shift and size ratios in face-box units), fitted
once on OTB-FaceOcc1-A (`--fit-head`) and applied unchanged to every method; face-boxed data
(the composed SYN clips) is scored on the published boxes as they are. The tracker itself
never sees the rule. Only confirmed tracks are scored. `--save DIR` writes every setting's
tracks as MOT files of the published face boxes (1-based like gt.txt).
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
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import ROOT, Config, ConfigError, TrackerConfig, load_config, replace
from common.report import provenance
from common.threads import limit_threads
from common.tracking import BOARD_CORES, StepClock, TrackManager
from common.tracking.schedule import TRACKER_MS
from models.dataset import DATA_DIR, mot_sequences
from models.images import read_image
from models.runtime import ModelFileError
from models.runtime import load_detector as load_face_detector

from .eval_bytetrack import run_bytetrack
from .eval_replay import CachedDetections, DetectorClock, detect_all

log = logging.getLogger(__name__)

# (dx, dy, sx, sy): head centre = face centre + (dx*w, dy*h); head size = (sx*w, sy*h).
# Fitted per detector with `facetrack eval --fit-head .../OTB-FaceOcc1-A`: each boxes a face its
# own way (YuNet's boxes are wider and shorter than BlazeFace's), so one detector's rule
# would score another's correct boxes off the head. full: full-range BlazeFace, tvm, 298
# frames; yunet: YuNet-s at 640x480, onnxruntime, score >= 0.7, 300 frames. Models without
# their own rule use full-range BlazeFace's (logged).
HEAD_FROM_FACE = {"full": (0.03, 0.007, 1.148, 1.572), "yunet": (0.008, 0.021, 1.426, 1.353)}
GRID_KINDS = ("kcf", "csrt", "mosse", "none")
GRID_INTERVALS = ("1", "2", "3", "5", "10", "adaptive")


@dataclass
class Sequence:
    name: str
    frames: list[Path]
    gt: np.ndarray  # MOT rows: frame, id, left, top, width, height, ...
    path: Path
    fps: float = 30.0
    boxes: str = "face"  # what the gt boxes: "face" (scored as published) or "head" (face→head rule)
    head_rule: tuple[float, float, float, float] = HEAD_FROM_FACE["full"]  # the detector's (HEAD_FROM_FACE)

    @property
    def group(self) -> str:
        return self.name.split("-", 1)[0]

    @classmethod
    def load(cls, path: Path, boxes: str = "face") -> "Sequence":
        """`boxes` applies unless seqinfo.ini says `boxes=face|head` itself."""
        ini = configparser.ConfigParser()
        ini.read(path / "seqinfo.ini")
        info = ini["Sequence"]
        frames = [path / info.get("imDir", "img1") / f"{i:06d}{info.get('imExt', '.jpg')}"
                  for i in range(1, int(info["seqLength"]) + 1)]
        return cls(info.get("name", path.name), frames, np.loadtxt(path / "gt/gt.txt", delimiter=",", ndmin=2), path,
                   float(info.get("frameRate", 30)), info.get("boxes", boxes))


@dataclass
class RunResult:
    """One setting on one sequence: MOT rows (published face boxes) and costs."""
    rows: list[tuple[float, ...]]  # frame, id, x1, y1, x2, y2, score
    frames: int
    detector_calls: int
    detector_cpu_s: float
    tracker_cpu_s: float
    counters: dict[str, int]


def face_to_head(box: np.ndarray, rule: tuple[float, float, float, float]) -> np.ndarray:
    dx, dy, sx, sy = rule
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * h
    return np.array([cx - sx * w / 2, cy - sy * h / 2, cx + sx * w / 2, cy + sy * h / 2])


def tracker_config(base: TrackerConfig, kind: str, interval: str) -> TrackerConfig:
    """`interval` is a fixed N or "adaptive" (between the config's bounds)."""
    if interval == "adaptive":
        return replace(base, kind=kind, adaptive=True)
    n = int(interval)
    return replace(base, kind=kind, adaptive=False, interval_min=n, interval_max=n)


def run_sequence(images: list[np.ndarray], cache: CachedDetections, cfg: TrackerConfig, fps: float,
                 latency_ms: float, min_score: float = 0.0, start_score: float = 0.5, cores: int = BOARD_CORES,
                 tracker_ms: float = TRACKER_MS) -> RunResult:
    """The manager over one sequence, fed as live: the detector starts when the manager's
    interval says so and the detector is free; its result arrives `latency_ms` later, and
    the manager is told each call cost that (live: each call's reported latency). The board is
    `cores` CPUs and a tracker update costs `tracker_ms` (a StepClock): the same on any machine."""
    manager = TrackManager(cfg, fps=fps, start_score=start_score, cores=cores, clock=StepClock(tracker_ms))
    clock = DetectorClock(latency_ms, fps)
    rows, calls, det_s, trk_s, last = [], 0, 0.0, 0.0, None
    for frame_id, image in enumerate(images, start=1):
        if (last is None or frame_id - last >= manager.detect_interval) and clock.can_start(frame_id):
            clock.start(frame_id)
            calls, last = calls + 1, frame_id
            det_s += float(cache.cpu_s[frame_id - 1])
            manager.detector_cost(latency_ms)  # what the clock says a call takes, as live says each one
        arrived = clock.arrived(frame_id)
        t0 = time.process_time()
        tracks = manager.step(frame_id, image, cache.at(arrived[-1], min_score) if arrived else None)
        trk_s += time.process_time() - t0
        rows += [(frame_id, t.id, *t.box, t.score) for t in tracks if t.state == "confirmed"]
    return RunResult(rows, len(images), calls, det_s, trk_s, dict(manager.counters))


def write_mot(path: Path, rows, head_rule: tuple[float, float, float, float] | None) -> None:
    """Rows in MOT format, 1-based pixels like the gt; face boxes mapped to heads by `head_rule` if given."""
    lines = []
    for frame, tid, x1, y1, x2, y2, conf in rows:
        box = face_to_head(np.array([x1, y1, x2, y2]), head_rule) if head_rule else (x1, y1, x2, y2)
        lines.append(f"{frame},{tid},{box[0] + 1:.2f},{box[1] + 1:.2f},{box[2] - box[0]:.2f},{box[3] - box[1]:.2f},"
                     f"{conf:.3f},-1,-1,-1")
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
            for seq in sequences:
                write_mot(trk_dir / setting / "data" / f"{seq.name}.txt", per_seq[seq.name].rows,
                          seq.head_rule if seq.boxes == "head" else None)
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
    out: dict[str, dict[str, dict]] = {}
    for setting, per_seq in output["MotChallenge2DBox"].items():
        out[setting] = {}
        for seq, by_class in per_seq.items():
            m = by_class["pedestrian"]
            out[setting]["COMBINED" if seq == "COMBINED_SEQ" else seq] = {
                "HOTA": 100 * float(np.mean(m["HOTA"]["HOTA"])), "DetA": 100 * float(np.mean(m["HOTA"]["DetA"])),
                "AssA": 100 * float(np.mean(m["HOTA"]["AssA"])), "IDF1": 100 * float(m["Identity"]["IDF1"]),
                "MOTA": 100 * float(m["CLEAR"]["MOTA"]), "IDSW": int(m["CLEAR"]["IDSW"]),
                "Frag": int(m["CLEAR"]["Frag"])}
    return out


def _costs(runs: list[RunResult]) -> dict:
    frames = sum(r.frames for r in runs)
    det_ms, trk_ms = (1000 * sum(getattr(r, k) for r in runs) / frames for k in ("detector_cpu_s", "tracker_cpu_s"))
    return {"detector_calls": sum(r.detector_calls for r in runs), "frames": frames,
            "detector_ms_per_frame": det_ms, "tracker_ms_per_frame": trk_ms, "cpu_ms_per_frame": det_ms + trk_ms}


def summarise(results: dict[str, dict[str, RunResult]], sequences: list[Sequence]) -> dict[str, list[dict]]:
    """Rows per scope: every group's combined scores, ALL (when there are several groups),
    and every sequence; one row per setting with scores and costs."""
    groups: dict[str, list[Sequence]] = {}
    for seq in sequences:
        groups.setdefault(seq.group, []).append(seq)
    scopes = {name: seqs for name, seqs in groups.items()}
    if len(groups) > 1:
        scopes["ALL"] = sequences
    out: dict[str, list[dict]] = {}
    for scope, seqs in scopes.items():
        scores = score({s: {q.name: per[q.name] for q in seqs} for s, per in results.items()}, seqs)
        out[scope] = [{"setting": s, **scores[s]["COMBINED"], **_costs([results[s][q.name] for q in seqs])}
                      for s in results]
    all_scores = score(results, sequences) if len(sequences) > 1 else None
    for seq in sequences:
        per = all_scores or score({s: {seq.name: r[seq.name]} for s, r in results.items()}, [seq])
        out[seq.name] = [{"setting": s, **per[s][seq.name], **_costs([results[s][seq.name]])} for s in results]
    return out


def table(summary: dict[str, list[dict]]) -> str:
    """Markdown: one row per scope and setting."""
    head = ("| clips | setting | HOTA | DetA | AssA | IDF1 | MOTA | IDSW | Frag | detector calls | detector ms/frame "
            "| tracker ms/frame | CPU ms/frame |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    body = [f"| {scope} | {r['setting']} | {r['HOTA']:.1f} | {r['DetA']:.1f} | {r['AssA']:.1f} | {r['IDF1']:.1f} "
            f"| {r['MOTA']:.1f} | {r['IDSW']} | {r['Frag']} | {r['detector_calls']} | {r['detector_ms_per_frame']:.2f} "
            f"| {r['tracker_ms_per_frame']:.2f} | {r['cpu_ms_per_frame']:.2f} |"
            for scope, rows in summary.items() for r in rows]
    return "\n".join([head, *body])


def load_detector(cfg: Config, backend: str | None):
    """The real detector, set up as the detector service sets it up (config's detector section)."""
    model_dir = Path(cfg.detector.model_dir)
    return load_face_detector(variant=cfg.detector.variant, backend=backend or cfg.detector.backend,
                model_dir=model_dir if model_dir.is_absolute() else ROOT / model_dir,
                score_threshold=cfg.detector.score_threshold, nms_iou=cfg.detector.nms_iou,
                num_threads=cfg.detector.threads, input_size=cfg.detector.input_size)


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


def _boxes(text: str) -> tuple[str, list[str]]:
    """`face`, `head`, or `head=GLOB[,GLOB]` (head for sequence names matching, face otherwise)."""
    kind, _, globs = text.partition("=")
    if kind not in ("face", "head") or (globs and kind != "head"):
        raise argparse.ArgumentTypeError(f"expected face, head or head=GLOB[,GLOB], got {text!r}")
    return kind, globs.split(",") if globs else []


def baselines(base: TrackerConfig) -> dict[str, TrackerConfig | None]:
    """The baselines of every run (None: ByteTrack, which is not a TrackManager setting)."""
    return {"article-kcf-5": tracker_config(base, "kcf", "5"), "none-1": tracker_config(base, "none", "1"),
            "bytetrack": None}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facetrack eval", description=__doc__.splitlines()[0])
    parser.add_argument("sequences", nargs="*", type=Path,
                        help="MOTChallenge sequence folders (img1/, gt/gt.txt, seqinfo.ini); "
                             f"default: every one in the test data, {DATA_DIR}")
    parser.add_argument("--tracker", choices=GRID_KINDS, help="default: tracker.kind of the config")
    parser.add_argument("--interval", type=_interval, help="detector every N frames, or 'adaptive' (default: the config's)")
    parser.add_argument("--grid", action="store_true", help=f"also every tracker {GRID_KINDS} x interval {GRID_INTERVALS}")
    parser.add_argument("--boxes", type=_boxes, default=("face", []), metavar="face|head|head=GLOB,...",
                        help="what the gt boxes where seqinfo.ini does not say (boxes=face|head): head boxes get the "
                             "face->head rule; head=OTB-* for the names matching (default: face)")
    parser.add_argument("--latency-ms", type=float, help="detector latency: its results reach the tracker this late "
                        "(default: the detector's median measured on the first sequence; 0 = synchronous)")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write DIR/<setting>/<sequence>.txt (MOT, face boxes)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--config", help="stack config (default: configs/default.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key, e.g. detector.variant=yunet (repeatable)")
    parser.add_argument("--backend", choices=("tvm", "torchscript", "onnxruntime", "torch"), help="detector backend (default: the config's)")
    parser.add_argument("--fit-head", action="store_true", help="fit the face->head box rule on the (first) sequence and print it")
    parser.add_argument("--cores", type=int, default=BOARD_CORES,
                        help=f"CPUs of the board evaluated (default {BOARD_CORES}, a Pi 5; 1: the detector "
                             "shares the tracker's core), never this machine's")
    parser.add_argument("--tracker-ms", type=float, default=TRACKER_MS,
                        help=f"what one correlation-tracker update costs on that board (default {TRACKER_MS:g}; "
                             "decides detect-or-track with --cores 1), never timed here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    limit_threads(cfg.tracker.threads)  # the detector below gets detector.threads, as live
    kind, globs = args.boxes
    sequences = [Sequence.load(p, "head" if kind == "head" and (not globs or any(p.name == g or Path(p.name).match(g)
                                                                                       for g in globs)) else "face")
                 for p in args.sequences or mot_sequences()]
    try:
        detector = load_detector(cfg, args.backend)
    except (ModelFileError, ValueError) as exc:  # one line each: missing/corrupt model, bad variant
        log.error("cannot load the detector: %s", exc)
        return 1
    variant = cfg.detector.variant
    if variant not in HEAD_FROM_FACE and any(s.boxes == "head" for s in sequences):
        log.warning("no face->head rule fitted for %s: head-boxed sequences use full-range BlazeFace's", variant)
    rule = HEAD_FROM_FACE.get(variant, HEAD_FROM_FACE["full"])
    sequences = [dataclasses.replace(s, head_rule=rule) for s in sequences]
    if args.fit_head:
        images = [read_image(p) for p in sequences[0].frames]
        print(json.dumps(fit_head(sequences[0], images, detector)))
        return 0
    default_interval = "adaptive" if cfg.tracker.adaptive else str(cfg.detector.every_n)  # as services/tracker.py
    settings: dict[str, TrackerConfig | None] = {
        "facetrack": tracker_config(cfg.tracker, args.tracker or cfg.tracker.kind, args.interval or default_interval),
        **baselines(cfg.tracker)}
    if args.grid:
        settings |= {f"{k}-{i}": tracker_config(cfg.tracker, k, i) for k in GRID_KINDS for i in GRID_INTERVALS}
    threshold = detector.score_threshold  # the config's, else the model's own
    detector.score_threshold = min(threshold, cfg.tracker.low_score)  # low-score boxes feed the second stage
    latency_ms = args.latency_ms
    results: dict[str, dict[str, RunResult]] = {name: {} for name in settings}
    for seq in sequences:
        images = [read_image(p) for p in seq.frames]
        cache = detect_all(images, detector)
        if latency_ms is None:
            latency_ms = 1000 * float(np.median(cache.wall_s))
            log.info("detector latency %.1f ms (median over %s); detections arrive %d frame(s) late at %g fps",
                     latency_ms, seq.name, math.ceil(latency_ms * seq.fps / 1000 - 1e-9), seq.fps)
        for name, tcfg in settings.items():
            if tcfg is None:
                rows, calls, det_s, trk_s = run_bytetrack(cache, len(images), seq.fps, latency_ms, threshold,
                                                          cfg.tracker.low_score)
                result = RunResult(rows, len(images), calls, det_s, trk_s, {})
            else:
                result = run_sequence(images, cache, tcfg, seq.fps, latency_ms, cfg.tracker.low_score, threshold,
                                      args.cores, args.tracker_ms)
            results[name][seq.name] = result
            log.info("%s %s: %d detector calls, %d rows", seq.name, name, result.detector_calls, len(result.rows))
        del images
    if args.save:
        for name, per_seq in results.items():
            (args.save / name).mkdir(parents=True, exist_ok=True)
            for seq_name, result in per_seq.items():
                write_mot(args.save / name / f"{seq_name}.txt", result.rows, head_rule=None)
    summary = summarise(results, sequences)
    print(json.dumps({"latency_ms": latency_ms, "scopes": summary}, indent=2) if args.json else
          f"{table(summary)}\n\nDetections reach every setting {latency_ms:.1f} ms after their frame (--latency-ms; "
          f"default: the detector's median latency on the first sequence).\n\n{provenance(parser.prog, argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
