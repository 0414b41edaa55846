"""A sink process: frames with their tracks, handed to one sink kind (services/sinks/).

  python -m services.sink [--kind KIND] [--port N] [--out DIR] [--config F] [--set K=V]

It subscribes to `frame` and `tracks`, pairs them by frame id (services/sinks/pairing.py),
reads the pixels from the ring when the kind needs them, and hands each pair to the kind.
Every tracks frame id is either processed or counted as dropped (a gap in the ids, a frame
that never came or was overwritten in the ring, or skipped by a viewer that fell behind);
the latency of a processed frame is now - t_capture (both wall-clock `time.time()`).
Several sinks can run at once: each is its own subscriber. A sink that writes files names
their directory (`Sink.record_root`, normally `sink.record_dir`); a thread of the process prunes
every file under it every `sink.retention_check_s` (services/sinks/retention.py), off the frame loop.
"""
from __future__ import annotations

import argparse
import functools
import logging
import sys
import time

from common.bus import Subscriber
from common.config import ConfigError, load_config
from common.frame_ring import RingReader
from common.health import HealthView
from common.messages import Frame, GalleryReply, Identity, Metrics, StackHealth, Tracks
from common.recent import RecentMap
from common.runs import RunWatch
from common.service import InputError, ServiceContext, run_service
from services.sinks import KINDS, Sink
from services.sinks.pairing import FramePairer, Paired
from services.sinks.snapshots import SnapshotBook
from services.sinks.retention import Pruner, Retention

log = logging.getLogger("sink")

MIN_PAIRING = 64  # frames kept waiting for tracks; the ring's slot count if larger
MAX_NAMES = 1024  # track names kept; the oldest named are forgotten first


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, help="sink kind (default: sink.kind of the config)")
    parser.add_argument("--port", type=int, help="live, privacy: HTTP port (default: sink.http_port, "
                        "sink.privacy_port; 0 = any free)")
    parser.add_argument("--out", help="recorder, jsonl: write into exactly this directory")


def make_sink(kind: str, ctx: ServiceContext) -> Sink:
    cls = Sink.registry[kind]
    for option in ("port", "out"):
        if getattr(ctx.args, option) is not None and option not in cls.options:
            log.warning("--%s is not used by a %s sink", option, kind)
    return cls.from_context(ctx)


class SinkLoop:
    """Pairs and dispatches one batch of bus messages at a time; keeps the counters."""

    def __init__(self, ctx: ServiceContext, sink: Sink, reader: RingReader | None,
                 snapshots: SnapshotBook | None = None):
        self.ctx, self.sink, self.reader, self.snapshots = ctx, sink, reader, snapshots
        self.pairer = FramePairer(max(MIN_PAIRING, ctx.config.ring.slots))
        self.stale = 0
        self.failed = 0
        self.names = RecentMap(MAX_NAMES)  # track id -> name, from the identity service
        self.run = RunWatch()  # the tracker run the names' track ids belong to
        root = sink.record_root()
        if root is None and snapshots is not None:  # a live view's or MQTT sink's snapshots are files too
            root = snapshots.directory.parent
        self.retention = None if root is None else Pruner(Retention.from_config(root, ctx.config.sink),
                                                          ctx.config.sink.retention_check_s)
        if self.retention is not None:
            self.retention.start()
        self.silent_after = ctx.config.tracker.max_lost_s
        self._last_tracks = time.monotonic()  # a sink that never gets tracks has nobody present either
        self.silences = 0
        self._silent = False
        self.health = HealthView(ctx.config)
        self._down: dict[str, str] = {}

    def batch(self, messages: list) -> None:
        stats = self.ctx.stats
        tracks = []
        book = self.snapshots
        for msg in messages:
            if isinstance(msg, Frame):
                stats.frames_in += 1
                self.pairer.add_frame(msg)
                if book is not None:
                    book.remember(msg)
            elif isinstance(msg, Tracks):
                if self.run.changed(msg.run_id):
                    self.names.clear()  # a new tracker run: its ids name other faces
                tracks.append(msg)
                self._last_tracks, self._silent = time.monotonic(), False
                if book is not None:
                    book.remember(msg)
            elif isinstance(msg, Identity):
                if msg.run_id and msg.run_id != self.run.run:
                    continue  # names a track of another tracker run
                self.names.remember(msg.track_id, msg.name)
                snapshot = None if book is None else book.identity_view(msg, self._pixels)
                if snapshot is not None:
                    self.sink.on_snapshot(snapshot)
                self.sink.on_identity(msg)
            elif isinstance(msg, Metrics) and self.sink.wants_metrics:
                self.sink.on_metrics(msg)
            elif isinstance(msg, StackHealth):
                self.health.update(msg)
            elif isinstance(msg, GalleryReply) and self.sink.wants_gallery:
                self.sink.on_gallery_reply(msg)
        if self.sink.latest_only:
            for older in tracks[:-1]:
                self.pairer.skip(older)
            tracks = tracks[-1:]
        for msg in tracks:
            self._one(msg)

    def _pixels(self, frame: Frame):
        """A frame's pixels from the ring (reused buffer), or None once overwritten."""
        return None if self.reader is None else self.reader.read(frame, copy=False)

    def _one(self, tracks: Tracks) -> None:
        frame = self.pairer.match(tracks)
        if frame is None:
            return
        image, reader = None, self.reader
        if self.sink.needs_pixels:
            assert reader is not None, "serve() opens the ring for a sink that needs pixels"
            image = reader.read(frame)
            if image is None:
                self.stale += 1
                return
        try:
            if self.snapshots is not None:
                def pixels():
                    if image is not None or reader is None:
                        return image
                    return reader.read(frame, copy=False)
                for snapshot in self.snapshots.see(frame, tracks, pixels):
                    self.sink.on_snapshot(snapshot)
            self.sink.handle(Paired(frame, tracks, image, self.names, self.snapshots))
        except OSError as exc:  # a full disk, say: count it, keep going, log now and then
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.error("frame %d not handled (%d so far): %s", frame.frame_id, self.failed, exc)
            return
        now = time.time()
        self.ctx.stats.processed((now - tracks.t_capture) * 1000)
        self.ctx.stats.latency("capture_to_sink", now - tracks.t_capture)
        self.ctx.stats.latency("tracked_to_sink", now - tracks.t_tracked)

    def tick(self) -> None:
        """Every loop turn: silence when due, the stages down when they change, the sink's own clock."""
        quiet = time.monotonic() - self._last_tracks
        if quiet > self.silent_after and not self._silent:
            self._silent = True
            self.silences += 1
            log.info("no tracks for %.1f s (tracker.max_lost_s %g): nobody is present until tracks come again",
                     quiet, self.silent_after)
            self.sink.on_silence(quiet)
        down = self.health.down()
        if down != self._down:
            self._down = down
            self.sink.on_down(down)
        self.sink.tick()

    def close(self) -> None:
        if self.retention is not None:
            self.retention.stop()

    def update_stats(self) -> None:
        stats = self.ctx.stats
        stats.dropped = self.pairer.dropped + self.stale
        stats.errors = self.failed
        stats.extra.update(self.sink.stats())
        if self.snapshots is not None:
            stats.extra.update(self.snapshots.stats())
        if self.retention is not None:
            stats.extra.update(self.retention.stats())
        stats.extra.update(silences=self.silences, gap=self.pairer.gap, missing=self.pairer.missing, stale=self.stale,
                           skipped=self.pairer.skipped)


def serve(ctx: ServiceContext, kind: str) -> None:
    cfg = ctx.config
    if kind not in KINDS:  # the config names a kind; the registry knows which exist
        raise ConfigError(f"config key 'sink.kind': {kind!r} is not a sink kind (known: {', '.join(KINDS)})")
    try:
        sink = make_sink(kind, ctx)
        sink.start()
    except OSError as exc:
        raise InputError(f"sink {kind}: cannot start ({exc})") from None
    topics = [Frame.TOPIC, Tracks.TOPIC, Identity.TOPIC]
    if sink.wants_metrics:
        topics += [Metrics.TOPIC, StackHealth.TOPIC]
    if sink.wants_gallery:
        topics.append(GalleryReply.TOPIC)
    sub = Subscriber(cfg.bus.subscribe, topics, hwm=cfg.bus.hwm, stats=ctx.stats)
    snapshots = SnapshotBook.from_config(cfg) if sink.wants_snapshots and cfg.snapshots.enabled else None
    reader = RingReader(cfg.ring_name, cfg.ring.shm_dir) if sink.needs_pixels or snapshots else None
    loop = SinkLoop(ctx, sink, reader, snapshots)
    try:
        while not ctx.stop.is_set():
            loop.batch(sub.batch(timeout_ms=100).messages)
            loop.tick()
            loop.update_stats()
            ctx.metrics.tick()
    finally:
        loop.close()
        sink.close()
        sub.close()
        if reader is not None:
            reader.close()


def kind_of(argv: list[str] | None) -> str:
    """The kind named by --kind, else by the config; known before start-up to name the service."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--kind")
    pre.add_argument("--config")
    pre.add_argument("--set", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    if known.kind:
        return known.kind
    try:
        return load_config(known.config, known.set).sink.kind
    except ConfigError:
        return "live"  # run_service reports the error and stops


def main(argv: list[str] | None = None) -> int:
    kind = kind_of(argv)
    return run_service(f"sink-{kind}", functools.partial(serve, kind=kind), argv, add_args)


if __name__ == "__main__":
    sys.exit(main())
