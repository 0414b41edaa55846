"""`facetrack sink KIND [options]`: attach one more sink to a running stack, in this terminal.

    facetrack sink live --port 8090            # another live view
    facetrack sink privacy --port 8091         # the live view with faces blurred
    facetrack sink recorder --out /tmp/rec     # MOT text + JSON lines on disk
    facetrack sink jsonl | jq .                # JSON lines of tracks on stdout

KIND is a registered sink kind (services/sinks/: live, privacy, recorder, jsonl, mqtt, rtsp); the options are the sink process's own (`--config`,
`--set section.key=value`, `--port`, `--out`). Ctrl-C detaches it; the stack runs on.
Under supervisord the shipped sinks are programs: `supervisorctl start sink-jsonl`.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from services import sink

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip() + f"\n\nkinds: {', '.join(sink.KINDS)}", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    kind, rest = argv[0], argv[1:]
    if kind not in sink.KINDS:
        print(f"facetrack sink: unknown kind {kind!r} (kinds: {', '.join(sink.KINDS)})", file=sys.stderr)
        return 2
    return sink.main(["--kind", kind, *rest])
