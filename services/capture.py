"""The capture service: one source in, every frame into the shared-memory ring and a `Frame` on the bus.

    python -m services.capture [--config FILE] [--set capture.source=demo://]

The ring is created from the first frame's size (after the capture.width/height resize) and
unlinked at exit. Files, the demo and MOT sequences are paced to their frame rate (or
capture.fps) on the monotonic clock; cameras and streams set their own pace. frame_id counts
from 0 and never goes back, also when a file loops. At the end of a source that does not loop,
capture waits a moment (subscribers still read the last frames from the ring) and exits 0.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from common.frame_ring import FrameRing, RingError, lores_name
from common.messages import Frame
from common.service import InputError, ServiceContext, run_service
from services.sources import Source, SourceInfo, fit, open_source, target_size

log = logging.getLogger("capture")

GRACE_S = 0.5  # after the last frame: the bus delivers it and readers copy it before the ring goes
FALLBACK_FPS = 30.0  # a file that does not state its rate


class Pacer:
    """Releases frames at a fixed rate: frame k is due at t0 + k / fps on the monotonic clock.

    Sleeping to an absolute schedule never accumulates drift. A frame that is already due is
    released at once (no sleep) and counted late when it is more than a quarter period behind;
    after a stall of more than `max_lag_s` the schedule restarts from now instead of bursting.
    `clock` is injected (the monotonic clock live; a test's own, which its `stop.wait` advances).
    """

    def __init__(self, fps: float, max_lag_s: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.period = 1.0 / fps
        self.max_lag_s = max_lag_s
        self.clock = clock
        self.late = 0
        self._due: float | None = None

    def wait(self, stop: threading.Event) -> None:
        now = self.clock()
        if self._due is None:
            self._due = now
        lag = now - self._due
        if lag < 0:
            stop.wait(-lag)
        elif lag > self.period / 4:
            self.late += 1
            if lag > self.max_lag_s:
                log.warning("%.0f ms behind schedule: pacing restarts from now", lag * 1000)
                self._due = now
        self._due += self.period


def _create_ring(ctx: ServiceContext, width: int, height: int, name: str | None = None,
                 ring_id: int | None = None) -> FrameRing:
    cfg = ctx.config
    try:
        return FrameRing.create(name or cfg.ring_name, width, height, cfg.ring.slots, shm_dir=cfg.ring.shm_dir,
                                ring_id=ring_id)
    except RingError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"frame ring {cfg.ring.shm_dir}/{cfg.ring_name}: cannot create ({exc.strerror})") from None


def _timed_read(source: Source) -> tuple[tuple | None, float]:
    t0 = time.perf_counter()
    item = source.read()
    return item, (time.perf_counter() - t0) * 1000


def _stream(ctx: ServiceContext, source: Source, info: SourceInfo) -> None:
    """Read, pace, write and publish until the source ends or the service is stopped."""
    cap = ctx.config.capture
    item, read_ms = _timed_read(source)
    if item is None and ctx.stop.is_set():  # stopped while waiting for a stream to answer
        return
    if item is None:
        raise InputError(f"capture source {source.name}: has no frames")
    width, height = target_size(item[0].shape[1], item[0].shape[0], cap.width, cap.height)
    pacer = None
    if not info.live:
        fps = cap.fps or info.fps or FALLBACK_FPS
        if not (cap.fps or info.fps):
            log.warning("capture source %s states no frame rate: pacing at %.0f fps", source.name, fps)
        pacer = Pacer(fps)
        log.info("pacing at %.2f fps", fps)
    stats, frame_id, loops = ctx.stats, 0, 0
    with contextlib.ExitStack() as rings:
        ring = rings.enter_context(_create_ring(ctx, width, height))
        small = source.lores()  # the camera's ISP-scaled copy: the detector reads it from its own ring
        lores = None
        if small is not None:
            lores = rings.enter_context(_create_ring(ctx, small.shape[1], small.shape[0],
                                                     lores_name(ctx.config.ring_name), ring.ring_id))
            log.info("lores %dx%d frames beside main %dx%d: the detector reads those", small.shape[1],
                     small.shape[0], width, height)
        while not ctx.stop.is_set():
            if item is None:
                if info.live or not cap.loop:
                    log.info("end of source %s after %d frames; exiting in %.1f s", source.name, frame_id, GRACE_S)
                    ctx.stop.wait(GRACE_S)
                    break
                source.rewind()
                loops += 1
                log.info("end of source %s: loop %d starts at frame_id %d", source.name, loops, frame_id)
                item, read_ms = _timed_read(source)
                if item is None:
                    raise InputError(f"capture source {source.name}: no frames after rewinding")
                continue
            image, pos = item
            stats.frames_in += 1
            if pacer is not None:
                pacer.wait(ctx.stop)
            t_capture = time.time()
            t0 = time.perf_counter()
            slot, seq = ring.write(frame_id, t_capture, fit(image, width, height))
            small, lores_seq = source.lores(), 0
            if lores is not None and small is not None:
                lores_seq = lores.write(frame_id, t_capture, small)[1]
            ctx.publisher.send(Frame(stack=ctx.config.stack.id, frame_id=frame_id, slot=slot, seq=seq,
                                     ring_id=ring.ring_id, t_capture=t_capture, width=width, height=height,
                                     source_pos=pos, lores_seq=lores_seq))
            stats.processed(read_ms + (time.perf_counter() - t0) * 1000)
            stats.extra.update(late=pacer.late if pacer else 0, loops=loops)
            ctx.metrics.tick()
            frame_id += 1
            item, read_ms = _timed_read(source)
    log.info("published %d frames (%d late, %d loops)", frame_id, pacer.late if pacer else 0, loops)


def run(ctx: ServiceContext) -> None:
    ctx.publisher  # connect to the bus now, so the first frames find their subscribers
    source = open_source(ctx.config.capture, ctx.stop)
    info = source.open()
    try:
        if info.width:
            log.info("capture source %s: %dx%d, %.2f fps, %s", source.name, info.width, info.height, info.fps,
                     "live" if info.live else "file")
        _stream(ctx, source, info)
    finally:
        source.close()


def main(argv: list[str] | None = None) -> int:
    return run_service("capture", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
