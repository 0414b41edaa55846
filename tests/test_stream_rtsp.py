"""The RTSP stream sink played back by a real client (Debian's ffmpeg) over RTSP/TCP.

The test plays capture and tracker (tests/sink_support.py) on real face frames; the
`python -m services.sink --kind rtsp` subprocess serves the annotated video through GStreamer.
ffmpeg decodes the stream to raw BGR: the box of track 1 must be on the face, in its colour.
Then the scene jumps to another frame (the box moves) and the time until a decoded frame shows
the box at its new place is the stream's latency (printed, never asserted: shared CPUs).
"""
from __future__ import annotations

import subprocess
import threading
import time

import numpy as np

from services.sinks.drawing import track_colour
from needs import tool
from sink_support import box_edge_pixels, colour_distance


class Player:
    """ffmpeg reading the stream, frames kept with their arrival time."""

    def __init__(self, url: str, width: int, height: int):
        ffmpeg = tool("ffmpeg", "ffmpeg")
        self.shape = (height, width, 3)
        self.frames: list[tuple[float, np.ndarray]] = []
        self.proc = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-fflags", "nobuffer",
             "-flags", "low_delay", "-i", url, "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        size = int(np.prod(self.shape))
        while True:
            data = self.proc.stdout.read(size)
            if len(data) < size:
                return
            self.frames.append((time.time(), np.frombuffer(data, np.uint8).reshape(self.shape)))

    def wait_frames(self, n: int, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while len(self.frames) < n and time.monotonic() < end:
            assert self.proc.poll() is None, f"ffmpeg exited: {self.proc.stderr.read().decode()[-1000:]}"
            time.sleep(0.05)
        assert len(self.frames) >= n, f"{len(self.frames)} of {n} frames decoded in {timeout} s"

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.thread.join(5)


def box_drawn(image: np.ndarray, box, colour) -> bool:
    return float(np.median(colour_distance(box_edge_pixels(image, box), colour))) < 80


def test_rtsp_stream_shows_the_tracks_to_a_real_client(stack, free_port):
    sink = stack.sink("--kind", "rtsp", f"--set=stream.port={free_port}")
    a, b = 10, 50  # two frames of the sequence with the face at different places
    colour = track_colour(1)
    assert not box_drawn(stack.images[a], stack.gt[a], colour)  # the colour is not there by itself
    player = None
    try:
        stack.publish_until(lambda: "RTSP stream at" in sink.log(), fps=30)
        url = sink.wait_log(r"RTSP stream at (rtsp://\S+)").group(1)
        with stack.publishing(fps=30, pos=a):
            player = Player(url, stack.width, stack.height)
            player.wait_frames(30)
        image = player.frames[-1][1]
        assert box_drawn(image, stack.gt[a], colour), "track 1's box is not on the decoded frame"
        assert not box_drawn(image, stack.gt[b], colour)
        # Inside the box the picture is the face frame itself (not black, not another frame).
        x1, y1, x2, y2 = (int(v) for v in stack.gt[a])
        inside = (slice(y1 + 10, y2 - 10), slice(x1 + 10, x2 - 10))
        assert np.abs(image[inside].astype(int) - stack.images[a][inside]).mean() < 12

        t_move = time.time()
        with stack.publishing(fps=30, pos=b):
            end = time.monotonic() + 10
            moved = None
            while moved is None and time.monotonic() < end:
                moved = next((t for t, im in list(player.frames) if t >= t_move and box_drawn(im, stack.gt[b], colour)),
                             None)
                time.sleep(0.02)
            count0, t0 = len(player.frames), time.time()
            time.sleep(2.0)
            fps = (len(player.frames) - count0) / (time.time() - t0)
        assert moved is not None, "the box never moved on the stream"
        print(f"RTSP: box moved on the decoded stream {1000 * (moved - t_move):.0f} ms after the first frame "
              f"that moved it; {fps:.1f} fps decoded (published at 30)")
        m = stack.wait_metrics("sink-rtsp", lambda m: m.extra.get("stream_written", 0) > 0)
        assert m.extra["stream_restarts"] == 0
    finally:
        if player is not None:
            player.stop()
    assert sink.stop() == 0
