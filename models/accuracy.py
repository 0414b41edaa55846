"""`facetrack eval-detector`: detection accuracy on every sequence of the test data.

For each sequence and backend: precision and recall at IoU >= 0.5 against the gt boxes
(recall also by face width: < 20, 20-50, > 50 px),
the same under a "centre inside the gt box" rule, and the distribution of each gt box's
best IoU. The OTB gt boxes cover the whole head while BlazeFace boxes the face, so a
perfect detection scores IoU ~0.5 there: read the centre rule for OTB, IoU for WIDER.
Also reports how far the TVM and TorchScript detections differ frame by frame.
Prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from common.report import provenance, table

from .dataset import DATA_DIR, Sample, datasets
from .images import read_image
from .build import parse_size
from .runtime import Detections, ModelFileError, load_detector
from .zoo import MODELS, thresholds

log = logging.getLogger("facetrack.models.accuracy")
# Recall is also given by face width (gt box, pixels): small faces are what a wall camera sees.
SIZE_BUCKETS = {"lt20px": (0, 20), "20to50px": (20, 50), "gt50px": (50, float("inf"))}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def centre_inside(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """(D, G) 1.0 where detection d's centre lies inside gt box g."""
    c = (dets[:, None, :2] + dets[:, None, 2:]) / 2
    return np.all((c >= gts[None, :, :2]) & (c <= gts[None, :, 2:]), axis=2).astype(np.float32)


def greedy_matches(score: np.ndarray, threshold: float) -> int:
    """Detections (rows, best first) each take the best free gt (column) with score >= threshold."""
    taken, n = set(), 0
    for row in score:
        for g in np.argsort(-row):
            if row[g] < threshold:
                break
            if g not in taken:
                taken.add(g)
                n += 1
                break
    return n


def evaluate(samples: list[Sample], results: list[Detections]) -> dict:
    n_det = n_gt = m_iou = m_centre = 0
    by_size = {name: [0, 0] for name in SIZE_BUCKETS}  # matched, gt
    best_iou = []
    for (_, gts), det in zip(samples, results):
        order = np.argsort(-det.scores)
        boxes = det.boxes[order]
        iou = iou_matrix(boxes, gts)
        n_det += len(boxes)
        n_gt += len(gts)
        m_iou += greedy_matches(iou, 0.5)
        m_centre += greedy_matches(centre_inside(boxes, gts) * (0.5 + iou), 0.5)
        best_iou += list(iou.max(0)) if len(boxes) else [0.0] * len(gts)
        widths = gts[:, 2] - gts[:, 0]
        for name, (lo, hi) in SIZE_BUCKETS.items():
            inside = (widths >= lo) & (widths < hi)
            by_size[name][0] += greedy_matches(iou[:, inside], 0.5) if inside.any() else 0
            by_size[name][1] += int(inside.sum())
    best = np.asarray(best_iou)
    out = {
        "frames": len(samples), "gt": n_gt, "detections": n_det,
        "iou50": {"precision": _ratio(m_iou, n_det), "recall": _ratio(m_iou, n_gt)},
        "centre_in_gt": {"precision": _ratio(m_centre, n_det), "recall": _ratio(m_centre, n_gt)},
        "best_iou": {q: round(float(np.percentile(best, p)), 3) for q, p in
                     (("p10", 10), ("p25", 25), ("p50", 50), ("p75", 75), ("p90", 90))} | {
                     "mean": round(float(best.mean()), 3)},
    }
    out["iou50_recall_by_width"] = {name: {"recall": _ratio(m, n), "gt": n} for name, (m, n) in by_size.items()}
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def agreement(a: list[Detections], b: list[Detections]) -> dict:
    """How far two backends' detections differ: count mismatches, worst box/score difference."""
    mismatched, box_diff, score_diff = 0, 0.0, 0.0
    for da, db in zip(a, b):
        if len(da) != len(db):
            mismatched += 1
            continue
        if len(da):
            ia, ib = np.argsort(-da.scores), np.argsort(-db.scores)
            box_diff = max(box_diff, float(np.abs(da.boxes[ia] - db.boxes[ib]).max()))
            score_diff = max(score_diff, float(np.abs(da.scores[ia] - db.scores[ib]).max()))
    return {"frames": len(a), "count_mismatch_frames": mismatched, "max_box_diff_px": round(box_diff, 5),
            "max_score_diff": round(score_diff, 6)}


def run(detector, samples: list[Sample], native: bool = False) -> list[Detections]:
    """Detections per sample; `native`: each image at its own size (a model that takes any, eager)."""
    out = []
    for path, _ in samples:
        image = read_image(path)
        out.append((detector.at(image.shape[1::-1]) if native else detector).detect(image))
    return out


def markdown(report: dict) -> str:
    """The report as a markdown table, one row per sequence and backend."""
    rows = []
    for name, entry in report["sequences"].items():
        for backend, r in entry.items():
            if backend.startswith("agreement_"):
                continue
            width = r["iou50_recall_by_width"]
            rows.append((name, backend, r["frames"], r["gt"], r["iou50"]["precision"], r["iou50"]["recall"],
                         *(width[b]["recall"] for b in SIZE_BUCKETS), r["centre_in_gt"]["precision"],
                         r["centre_in_gt"]["recall"], r["best_iou"]["p50"]))
    agree = [f"{name}: {k.removeprefix('agreement_').replace('_vs_', ' vs ')} differ in the face count on "
             f"{a['count_mismatch_frames']} of {a['frames']} frames, boxes by up to {a['max_box_diff_px']} px"
             for name, entry in report["sequences"].items() for k, a in entry.items() if k.startswith("agreement_")]
    frames = "every frame" if report["every"] == 1 else f"every {report['every']}th frame"
    return "\n".join([f"detector `{report['variant']}` at {report['input_size']}, score ≥ {report['score_threshold']}, "
                      f"NMS IoU {report['nms_iou']}, {frames} of the clips, every image of WIDER", "",
                      table(["sequence", "backend", "frames", "faces", "precision", "recall",
                             "recall < 20 px", "recall 20–50 px", "recall > 50 px", "centre-in-box precision",
                             "centre-in-box recall", "median best IoU"], rows, numeric_from=2),
                      *(["", *(f"- {line}" for line in agree)] if agree else [])])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack eval-detector", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=list(MODELS), default="full")
    p.add_argument("--backends", default="tvm,torchscript")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--score-threshold", type=float, help="default: the model's own (models/zoo.py)")
    p.add_argument("--every", type=int, default=1, help="use every Nth frame of the clips")
    p.add_argument("--input-size", default=None, metavar="WxH|native",
                   help="a model that takes any size (yunet): the size frames are fitted into (default: its own); "
                        "native: every image at its own size (torch backend), as libfacedetection runs")
    p.add_argument("--nms-iou", type=float, help="default: the model's own")
    p.add_argument("--only", help="comma list of sequences (default: all)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (with command, CPU and date) instead of JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    backends = [b for b in args.backends.split(",") if b]
    native = args.input_size == "native"
    if native and backends != ["torch"]:
        p.error("--input-size native runs eager PyTorch only: add --backends torch")
    size = None if args.input_size in (None, "native") else parse_size(args.input_size)
    try:
        detectors = {b: load_detector(args.variant, b, score_threshold=args.score_threshold, nms_iou=args.nms_iou,
                                      input_size=size) for b in backends}
    except (ModelFileError, ValueError) as exc:  # one line: a model not built, truncated, or an unknown backend
        log.error("cannot load the detector: %s", exc)
        return 1
    score_threshold, nms_iou = thresholds(args.variant, args.score_threshold, args.nms_iou)
    report = {"variant": args.variant, "score_threshold": score_threshold, "nms_iou": nms_iou, "every": args.every,
              "input_size": args.input_size or "x".join(map(str, MODELS[args.variant].input_size)), "sequences": {}}
    only = set(args.only.split(",")) if args.only else None
    for name, samples in datasets(args.data_dir).items():
        if only is not None and name not in only:
            continue
        samples = samples if name.startswith("widerface") else samples[::args.every]
        found = {b: run(d, samples, native) for b, d in detectors.items()}
        entry = {b: evaluate(samples, r) for b, r in found.items()}
        if len(backends) >= 2:
            entry["agreement_" + "_vs_".join(backends[:2])] = agreement(found[backends[0]], found[backends[1]])
        report["sequences"][name] = entry
        log.info("%s: %s", name, json.dumps(entry[backends[0]]))
    print(f"{markdown(report)}\n\n{provenance(p.prog, argv)}" if args.markdown else json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
