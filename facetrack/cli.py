"""`facetrack COMMAND ...`: one entry point; each command lives in the module that does it.

A table entry names "module" (its `main(argv)`) or "module:function".
"""
from __future__ import annotations

import importlib
import sys

# command -> (module, description); `bench` and its kinds are listed as "bench KIND".
COMMANDS = {
    "build-model": ("models.build", "build the face model: TorchScript, ONNX, TVM libraries"),
    "tune-model": ("models.tune", "MetaSchedule tuning; the database is kept in models/tuning"),
    "build-identity": ("models.facerec.build", "build the face descriptor model: TorchScript, ONNX, TVM"),
    "enroll": ("facetrack.identity_cli:enroll_main", "enrol a person: enroll NAME IMAGE..."),
    "gallery": ("facetrack.identity_cli:gallery_main", "enrolled people: gallery list|remove NAME"),
    "sink": ("facetrack.sink_cli", "attach one more sink to a running stack: sink KIND [options]"),
    "config-doc": ("common.config_doc", "the configuration reference, docs/configuration.md (--check: is it up to date)"),
    "monitor": ("facetrack.monitor", "live table of every stage's metrics (--json for scripts)"),
    "eval": ("facetrack.eval", "score the tracker on MOTChallenge sequences with TrackEval"),
    "events": ("facetrack.events", "every stack's MQTT events on the broker, one JSON object per line"),
    "ha remove": ("facetrack.ha_cli:remove_main", "take this stack's entities out of Home Assistant (MQTT discovery)"),
    "remote-detector": ("services.remote_detector", "run the detector for a board's detector.remote endpoint"),
    "keys": ("facetrack.keys_cli", "CURVE keys of the remote-detector link: keys new NAME --dir D | keys list D"),
    "bench events": ("facetrack.bench_events", "track start -> MQTT event latency p50/p99, one JSON object"),
    "bench detector": ("models.bench", "detector latency per backend, one JSON object"),
    "bench identity": ("models.facerec.bench", "face embedding latency per backend, one JSON object"),
    "eval-detector": ("models.accuracy", "detector precision/recall/IoU on every sequence of the test data"),
    "eval identity": ("facetrack.identity_eval", "naming and re-identification on OTB clips, one JSON object"),
    "bench soak": ("facetrack.bench_soak", "RSS, CPU and fps per process over time (--minutes M), one JSON object"),
    "bench pipeline": ("facetrack.bench_pipeline", "the whole stack on the demo clip, one JSON object"),
    "bench lores": ("facetrack.bench_lores", "ring read + model preprocessing, main frames vs the camera's lores, one JSON object"),
}


def usage() -> str:
    lines = ["usage: facetrack COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<16} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            module, _, func = COMMANDS[name][0].partition(":")
            return getattr(importlib.import_module(module), func or "main")(argv[words:])
    print(usage(), file=sys.stderr)
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
