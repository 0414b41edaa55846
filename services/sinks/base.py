"""What every sink kind is: one abstract base class, and the registry of kinds it keeps.

A kind subclasses `Sink` with `kind="name"` and is then known to `services/sink.py` (the
bus loop, the pairing of frames with tracks, the counters) and to `facetrack sink`: adding a
kind means one module in this package and nothing else to edit.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from common.messages import GalleryReply, Identity, Metrics
    from common.service import ServiceContext
    from services.sinks.pairing import Paired
    from services.sinks.snapshots import Snapshot


class Sink(abc.ABC):
    """One sink kind. Class attributes say what the loop gives it:

    `needs_pixels`: the frame is read from the ring (`Paired.image`; None otherwise);
    `latest_only`: when behind, only the newest frame is handed over, the rest skipped and
    counted (a viewer wants the present; a recorder wants every frame);
    `wants_metrics`: every service's Metrics message goes to `on_metrics`, and the stages that should
    run and do not (the watchdog's StackHealth, common/health.py) to `on_down` when they change;
    `wants_snapshots`: the loop keeps face snapshots (snapshots.py) for it, hands each new one to
    `on_snapshot` before the frame it came from, and lets `Paired.snapshots` look them up;
    `wants_gallery`: the identity service's GalleryReply messages go to `on_gallery_reply` (the
    sink sends GalleryRequests itself, from `tick`);
    `options`: the sink process's command-line options (`--port`, `--out`) the kind uses.
    """
    registry: ClassVar[dict[str, type[Sink]]] = {}
    kind: ClassVar[str]
    needs_pixels: ClassVar[bool] = True
    latest_only: ClassVar[bool] = False
    wants_metrics: ClassVar[bool] = False
    wants_snapshots: ClassVar[bool] = False
    wants_gallery: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, kind: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if kind is not None:
            if kind in Sink.registry:
                raise TypeError(f"sink kind {kind!r} is already {Sink.registry[kind].__qualname__}")
            cls.kind = kind
            Sink.registry[kind] = cls

    @classmethod
    @abc.abstractmethod
    def from_context(cls, ctx: ServiceContext) -> Sink:
        """The sink as the config and the command line (`ctx.args`) ask for it."""

    def start(self) -> None:
        """Open what the sink needs (a port, a file, a connection); OSError names the cause."""

    @abc.abstractmethod
    def handle(self, paired: Paired) -> None:
        """One frame with its tracks (and the names known for them)."""

    def on_identity(self, msg: Identity) -> None:
        """A name for a track, from the identity service (the loop also keeps it in `Paired.names`)."""

    def on_metrics(self, msg: Metrics) -> None:
        """A service's metrics (only when `wants_metrics`)."""

    def on_down(self, down: dict[str, str]) -> None:
        """The stages that should run and do not, program -> why ({} once all run again); only when
        `wants_metrics`."""

    def on_gallery_reply(self, msg: GalleryReply) -> None:
        """The identity service's answer to a gallery change this sink asked for (only when `wants_gallery`)."""

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """A track's new best face view (only when `wants_snapshots` and snapshots are enabled)."""

    def on_silence(self, quiet_s: float) -> None:
        """No tracks for `tracker.max_lost_s` (`quiet_s` so far): the video stopped, or a stage
        before this sink did. Every face it still shows as present is gone (the tracker itself
        would have dropped them by now); called once per silence, tracks end it."""

    def tick(self) -> None:
        """Called on every turn of the loop, frames or not: for work on a clock of the sink's own."""

    def record_root(self) -> Path | None:
        """The directory this sink writes files under, normally `sink.record_dir` (None: no files).
        The sink loop keeps it within `sink.max_record_mb` and `sink.retention_days`, pruning
        every file under it, oldest first (services/sinks/retention.py)."""
        return None

    def stats(self) -> dict[str, float]:
        """The sink's own counters, for the `extra` map of its metrics."""
        return {}

    def close(self) -> None:
        """Release what `start` opened; safe to call twice."""
