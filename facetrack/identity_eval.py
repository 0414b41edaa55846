"""`facetrack eval identity`: the identity logic over real clips with the real tracker, one JSON object.

OTB-FaceOcc1-A, OTB-FaceOcc1-B and OTB-Girl-A run one after the other through the real
detector, TrackManager and IdentityBook (the service's bookkeeping) with real embeddings;
each clip gets a tracker of its own, as after a camera cut, while time runs on at 30 fps:
so the woman's track ends at the A/B cut and a new one starts (re-identification should
link them), then the girl's track starts just after hers ended (it must not be linked).
The woman is enrolled from frames 1, 50 and 100 of -A. Per clip it reports the fraction of
frames on which the target's track carries the right name (hers when she is enrolled,
else "unknown"), frames with a wrong name, track starts on the target, and
re-identification links (right: same person; wrong: another person), with the enrolled
gallery and with an empty one (where only re-identification can link tracks),
re-identification off and on. Detections here are for the current frame (as in
`facetrack eval`), so the service's lateness is not part of this measurement.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field

import msgspec
import numpy as np

from common.config import Config, IdentityConfig, load_config, replace
from common.gallery import UNKNOWN, Snapshot
from common.identities import IdentityBook
from common.messages import Detections, Track, Tracks
from common.report import provenance, table
from common.tracking import BOARD_CORES, FrameDetections, StepClock, TrackManager
from models.dataset import DATA_DIR
from models.facerec.align import align
from models.images import read_image
from models.facerec.quality import view_quality

log = logging.getLogger("facetrack.identity_eval")

DATA = DATA_DIR
CLIPS = (("OTB-FaceOcc1-A", "alice"), ("OTB-FaceOcc1-B", "alice"), ("OTB-Girl-A", "girl"))  # clip, person
ENROLLED = "alice"
ENROL_FRAMES = (1, 50, 100)
FPS = 30.0
ID_STRIDE = 100_000  # track ids of clip k are offset by k * ID_STRIDE: one id space over the clips


@dataclass
class Step:
    """What the tracker and detector produced on one frame."""
    frame_id: int
    tracks: list[Track]
    detections: Detections | None
    chips: list[np.ndarray] = field(default_factory=list)  # aligned face of every detection
    target: int | None = None  # the confirmed track on the gt face, if any


def _centre_inside(box, gt) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return gt[0] <= cx <= gt[2] and gt[1] <= cy <= gt[3]


def record(clip: str, clip_index: int, first_frame: int, detector, cfg: Config) -> list[Step]:
    """Run detector + tracker over a clip once; the replays reuse it."""
    data = DATA / clip
    rows = np.loadtxt(data / "gt" / "gt.txt", delimiter=",")
    gt = {int(r[0]): (r[2] - 1, r[3] - 1, r[2] - 1 + r[4], r[3] - 1 + r[5]) for r in rows}
    manager, last, steps = TrackManager(cfg.tracker, cores=BOARD_CORES, clock=StepClock()), None, []
    for n in range(1, len(gt) + 1):
        frame_id = first_frame + n - 1
        image = read_image(data / "img1" / f"{n:06d}.jpg")
        found, dets = None, None
        if last is None or frame_id - last >= manager.detect_interval:
            found, last = detector.detect(image), frame_id
            dets = FrameDetections(frame_id, np.asarray(found.boxes, np.float64).reshape(-1, 4),
                                   np.asarray(found.scores, np.float64).reshape(-1))
        tracks = [msgspec.structs.replace(t, id=t.id + clip_index * ID_STRIDE)
                  for t in manager.step(frame_id, image, dets)]
        step = Step(frame_id, tracks, None)
        if found is not None:
            step.detections = Detections(frame_id=frame_id, t_capture=0.0, t_in=0.0, t_out=0.0,
                                         boxes=found.boxes.tolist(), scores=found.scores.tolist(),
                                         keypoints=found.keypoints.tolist())
            step.chips = [align(image, k) for k in found.keypoints]
        step.target = next((t.id for t in tracks if t.state == "confirmed" and _centre_inside(t.box, gt[n])), None)
        steps.append(step)
    return steps


def replay(clips: dict[str, list[Step]], gallery: Snapshot, cfg: IdentityConfig, embed) -> dict:
    """The IdentityBook over the recorded clips; per-clip naming and re-identification figures."""
    book = IdentityBook(cfg, history=64)
    person: dict[int, str] = {}  # track id -> the clip's person ("alice" / "girl"), for tracks seen on the target
    out: dict[str, object] = {}
    links: dict[int, int] = {}  # new track id -> the ended track it continues
    embeds = 0
    for (clip, who), steps in zip(CLIPS, clips.values()):
        expected = who if who in gallery.names else UNKNOWN
        stats: dict[str, float] = {"target_frames": 0, "right_name": 0, "wrong_name": 0, "not_yet_named": 0}
        starts = set()
        for step in steps:
            msg = Tracks(frame_id=step.frame_id, t_capture=0.0, t_tracked=step.frame_id / FPS, tracks=step.tracks)
            book.on_tracks(msg)
            if step.detections is not None:
                qualities = [view_quality(k, s, cfg.min_eye_px)
                             for k, s in zip(step.detections.keypoints, step.detections.scores)]
                for cand in book.candidates(step.detections, qualities):
                    embeds += 1
                    ident = book.embedded(cand, embed(step.chips[cand.det_index]), gallery, msg.t_tracked)
                    if ident is not None and ident.same_as >= 0:
                        links[ident.track_id] = ident.same_as
            if step.target is None:
                continue
            person[step.target] = who
            starts.add(step.target)
            stats["target_frames"] += 1
            state = book.states.get(step.target)
            name = state.name if state is not None and state.match is not None else None
            key = "not_yet_named" if name is None else "right_name" if name == expected else "wrong_name"
            stats[key] += 1
        stats["target_tracks"] = len(starts)
        stats["right_name_fraction"] = round(stats["right_name"] / max(stats["target_frames"], 1), 4)
        out[clip] = stats
    right = sum(1 for new, old in links.items() if old in person and person.get(old) == person.get(new))
    out["reid_links"] = {"right": right, "wrong": len(links) - right, "pairs": sorted(links.items())}
    out["embeddings"] = embeds
    return out


def markdown(result: dict) -> str:
    """The result as a markdown table: one row per gallery x re-identification setting x clip."""
    rows = []
    for setting, out in result.items():
        if not isinstance(out, dict):
            continue
        links = out["reid_links"]
        for clip, _ in CLIPS:
            s = out[clip]
            rows.append((setting, clip, s["target_frames"], s["right_name_fraction"], s["wrong_name"],
                         s["not_yet_named"], s["target_tracks"], f"{links['right']} / {links['wrong']}"))
    return "\n".join([f"threshold {result['threshold']}, re-identification window {result['reid_window_s']} s; "
                      f"{ENROLLED} enrolled from frames {', '.join(map(str, ENROL_FRAMES))} of {CLIPS[0][0]}", "",
                      table(["gallery / re-id", "clip", "frames on the face", "named right (share)", "wrong name frames",
                             "not yet named", "tracks on the face", "re-id links right / wrong"], rows, numeric_from=2)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack eval identity", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="stack config (default: $FACETRACK_CONFIG or configs/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--detector-backend", default="tvm")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (with command, CPU and date) instead of JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    from models.facerec.runtime import load_embedder
    from models.runtime import load_detector

    cfg = load_config(args.config, args.set)
    detector = load_detector(variant=cfg.detector.variant, backend=args.detector_backend,
                             score_threshold=cfg.detector.score_threshold, nms_iou=cfg.detector.nms_iou,
                             num_threads=cfg.detector.threads, input_size=cfg.detector.input_size)
    embedder = load_embedder(cfg.identity.backend, threads=cfg.identity.threads)
    memo: dict[int, np.ndarray] = {}

    def embed(chip: np.ndarray) -> np.ndarray:
        key = id(chip)  # recorded chips live as long as the recording
        if key not in memo:
            memo[key] = embedder.embed(chip)[0]
        return memo[key]

    clips, first = {}, 1
    for k, (clip, _) in enumerate(CLIPS):
        clips[clip] = record(clip, k, first, detector, cfg)
        first += len(clips[clip])
        log.info("%s recorded", clip)
    enrol_img = [read_image(DATA / CLIPS[0][0] / "img1" / f"{f:06d}.jpg") for f in ENROL_FRAMES]
    enrol = np.stack([align(im, detector.detect(im).keypoints[0]) for im in enrol_img])
    galleries = {"enrolled": Snapshot([ENROLLED] * len(enrol), embedder.embed(enrol)),
                 "empty": Snapshot([], np.zeros((0, 128), np.float32))}
    result: dict[str, object] = {"threshold": cfg.identity.threshold, "reid_window_s": cfg.identity.reid_window_s}
    for gname, gallery in galleries.items():
        for reid in (False, True):
            icfg = replace(cfg.identity, reid=reid)
            result[f"{gname}/reid={'on' if reid else 'off'}"] = replay(clips, gallery, icfg, embed)
    print(f"{markdown(result)}\n\n{provenance(p.prog, argv)}" if args.markdown else json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
