"""The identity service: names the face on each confirmed track from the enrolled gallery.

It listens to frames, tracks and detections. A detection names the frame it was computed on
(several frames back); it is matched by IoU to the confirmed tracks of that same frame and,
when its view is worth it (first usable view of a track, or clearly better than the best
so far: larger, more frontal, higher score), the face is aligned by its eye keypoints from
that frame's pixels in the ring at once (before the slot is overwritten) and queued. One
face is embedded per loop turn, new tracks first, so the bus is drained between
inferences and never queues. Never every frame: a track is embedded a handful of times.
`Identity` messages go out when an answer is made or changes, and again every
`republish_s` for late-joining sinks. The gallery file is reloaded when it changes; a
missing or broken one leaves every face "unknown" but the service running. A detector that
finds faces without landmarks (a remote detector's: keypoints of shape (N, 0, 2)) gives nothing to
align a face by: such faces are counted (`no_landmarks`), never embedded (an unaligned chip
would name the wrong person), and one line says why; the service keeps running.

It owns the gallery: a GalleryRequest from the live view's pages (name a face, rename,
remove a person) is carried out here and answered with a GalleryReply. Naming a face enrols
the best descriptor this service embedded for that track, named by tracker run and id (a
live one, or one of the last ended ones, of this run or an earlier one); the gallery is then
reloaded at once, so every live track is matched again and the named one (and the same
person's others) get their new name in the next Identity.
"""
from __future__ import annotations

import collections
import logging
import sys
import time
from pathlib import Path

import numpy as np

from common.bus import Subscriber
from common.config import ROOT
from common.frame_ring import RingReader
from common.gallery import UNKNOWN, Gallery, GalleryError, GalleryWatcher, check_name
from common.identities import Candidate, IdentityBook
from common.messages import Detections, Frame, GalleryReply, GalleryRequest, Tracks
from common.runs import track_key
from common.service import InputError, ServiceContext, run_service
from models.facerec.align import align
from models.facerec.quality import view_quality

log = logging.getLogger("identity")

MAX_PENDING = 16  # detections waiting for their frame's tracks


def load(ctx: ServiceContext):
    """Load the descriptor model; a missing build becomes a one-line InputError."""
    from models.auto import resolve
    from models.facerec.build import artefact_path
    from models.facerec.runtime import EmbedderError, load_embedder

    cfg = ctx.config.identity
    model_dir = Path(cfg.model_dir)
    model_dir = model_dir if model_dir.is_absolute() else ROOT / model_dir
    backend = resolve(cfg.backend, artefact_path("llvm", model_dir).parent, "face descriptor", log)  # one line for auto
    try:
        return load_embedder(backend, model_dir, cfg.threads)
    except EmbedderError as exc:
        raise InputError(str(exc)) from None


class Identifier:
    """The service's state between messages: recent frames, pending detections, the face queue."""

    def __init__(self, ctx: ServiceContext, embedder):
        self.ctx, self.embedder = ctx, embedder
        cfg = ctx.config
        self.cfg = cfg.identity
        self.book = IdentityBook(self.cfg, history=cfg.tracker.history)
        self.reader = RingReader(cfg.ring_name, cfg.ring.shm_dir)
        self.frames: collections.OrderedDict[int, Frame] = collections.OrderedDict()
        self.max_frames = 2 * cfg.ring.slots
        self.pending: list[Detections] = []
        self.queue: dict[int, tuple[Candidate, np.ndarray]] = {}  # track id -> (candidate, aligned chip)
        self.gallery = GalleryWatcher(self.cfg.gallery, self.cfg.reload_s)
        self.embeds = 0
        self.no_landmarks = 0  # faces detected without landmarks: not embedded

    def on_message(self, msg) -> None:
        if isinstance(msg, Frame):
            self.ctx.stats.frames_in += 1
            self.frames[msg.frame_id] = msg
            while len(self.frames) > self.max_frames:
                self.frames.popitem(last=False)
        elif isinstance(msg, Tracks):
            for tid in self.book.on_tracks(msg):
                self.queue.pop(tid, None)
        elif isinstance(msg, GalleryRequest):
            reply = self.change_gallery(msg)
            (log.info if reply.ok else log.warning)("gallery request %s (%s): %s", msg.request_id, msg.action,
                                                     reply.detail)
            self.ctx.publisher.send(reply)
            self.reload_gallery(force=True)
        elif isinstance(msg, Detections):
            self.pending.append(msg)
            if len(self.pending) > MAX_PENDING:  # no tracks for a while (tracker down?)
                self.pending.pop(0)
                self.ctx.stats.dropped += 1

    def take_detections(self) -> None:
        """Use every pending detection whose frame's tracks have arrived (frames no longer in the ring are dropped)."""
        ready = [d for d in self.pending if d.frame_id <= self.book.latest_frame]
        self.pending = [d for d in self.pending if d.frame_id > self.book.latest_frame]
        for det in ready:
            if det.boxes and not any(det.keypoints):  # every face has as many landmarks (Detections checks)
                self._without_landmarks(det)
                continue
            qualities = [view_quality(k, s, self.cfg.min_eye_px) for k, s in zip(det.keypoints, det.scores)]
            frame = self.frames.get(det.frame_id)
            if det.ring_id and frame is not None and frame.ring_id != det.ring_id:
                continue  # computed on a frame of an earlier capture run
            wanted = [c for c in self.book.candidates(det, qualities)
                      if c.track_id not in self.queue or c.quality > self.queue[c.track_id][0].quality
                      or c.run_id != self.queue[c.track_id][0].run_id]  # queued for an earlier tracker run's face
            if not wanted:
                continue
            image = self.reader.read(frame, copy=False) if frame is not None else None
            if image is None:
                self.ctx.stats.dropped += 1
                continue
            for cand in wanted:
                self.queue[cand.track_id] = (cand, align(image, det.keypoints[cand.det_index]))

    def _without_landmarks(self, det: Detections) -> None:
        if not self.no_landmarks:
            log.warning("detections carry faces with no landmarks (detector.variant %s%s): faces cannot be "
                        "aligned, so no track is named; use a detector with eye landmarks",
                        self.ctx.config.detector.variant,
                        f", or the remote detector at {self.ctx.config.detector.remote}" if self.ctx.config.detector.remote
                        else "")
        self.no_landmarks += len(det.boxes)

    def embed_one(self) -> None:
        """Embed the most urgent queued face: tracks without a name yet first, then the best view."""
        tid = max(self.queue, key=lambda k: (k not in self.book.states, self.queue[k][0].quality))
        cand, chip = self.queue.pop(tid)
        t0 = time.perf_counter()
        descriptor = self.embedder.embed(chip)[0]
        self.ctx.stats.processed((time.perf_counter() - t0) * 1000)
        self.embeds += 1
        identity = self.book.embedded(cand, descriptor, self.gallery.snapshot, time.time())
        if identity is not None:
            log.info("track %d: %s (distance %.3f, frame %d, view quality %.1f)", identity.track_id,
                     identity.name, identity.distance, identity.frame_id, cand.quality)
            self.ctx.publisher.send(identity)

    def change_gallery(self, req: GalleryRequest) -> GalleryReply:
        """Carry out one request on the gallery file; the reply says what was done, or why not."""
        def refused(detail: str) -> GalleryReply:
            return GalleryReply(request_id=req.request_id, ok=False, detail=detail, name=req.name)

        try:
            if req.action == "enrol":
                descriptor = self.book.descriptor_of(req.run_id, req.track_id)
                track = f"track {req.track_id} of run {req.run_id:016x}"
                if descriptor is None:
                    return refused(f"no face of {track} was embedded (no face with eyes in its "
                                   "crops, or the track is too old): nothing to enrol")
                with Gallery(self.cfg.gallery, create=True) as gallery:
                    faces = gallery.add(req.name, descriptor[None], [f"track {track_key(req.run_id, req.track_id)}"],
                                        [req.thumbnail or None])
                name = check_name(req.name)  # as add() stored it
                return GalleryReply(request_id=req.request_id, ok=True, name=name, faces=faces,
                                    detail=f"{track} enrolled as {name} ({faces} face(s))")
            with Gallery(self.cfg.gallery) as gallery:
                if req.action == "rename":
                    moved = gallery.rename(req.name, req.new_name)
                    if not moved:
                        return refused(f"nobody called {req.name!r}")
                    new_name = check_name(req.new_name)  # as rename() stored it
                    faces = sum(1 for f in gallery.faces() if f.name == new_name)
                    return GalleryReply(request_id=req.request_id, ok=True, name=new_name, faces=faces,
                                        detail=f"{req.name} renamed {new_name} ({moved} face(s))")
                removed = gallery.remove(req.name)
                if not removed:
                    return refused(f"nobody called {req.name!r}")
                return GalleryReply(request_id=req.request_id, ok=True, name=req.name, faces=0,
                                    detail=f"removed {req.name}: {removed} face(s)")
        except GalleryError as e:
            return refused(str(e))

    def reload_gallery(self, force: bool = False) -> None:
        snapshot = self.gallery.poll(force=force)
        if snapshot is not None:
            for identity in self.book.rematch(snapshot, time.time()):
                log.info("track %d: now %s (gallery changed)", identity.track_id, identity.name)
                self.ctx.publisher.send(identity)

    def republish(self) -> None:
        for identity in self.book.current(time.time()):
            self.ctx.publisher.send(identity)

    def update_metrics(self) -> None:
        """frames_in counts frames seen; frames_out, fps and p50/p99 are embeddings and their ms."""
        stats = self.ctx.stats
        stats.extra.update(embeds=self.embeds, queued=len(self.queue), gallery_faces=len(self.gallery.snapshot),
                           no_landmarks=self.no_landmarks,
                           tracks_named=sum(1 for s in self.book.states.values()
                                            if s.match is not None and s.match.name != UNKNOWN),
                           stale_frames=self.reader.stale)

    def close(self) -> None:
        self.reader.close()


def serve(ctx: ServiceContext) -> None:
    embedder = load(ctx)
    cfg = ctx.config
    sub = Subscriber(cfg.bus.subscribe, [Frame.TOPIC, Tracks.TOPIC, Detections.TOPIC, GalleryRequest.TOPIC],
                     hwm=cfg.bus.hwm, stats=ctx.stats)
    ident = Identifier(ctx, embedder)
    next_republish = time.monotonic() + cfg.identity.republish_s
    try:
        while not ctx.stop.is_set():
            ctx.metrics.tick()
            ident.reload_gallery()
            for msg in sub.batch(timeout_ms=0 if ident.queue else 200).messages:
                ident.on_message(msg)
            ident.take_detections()
            if ident.queue:
                ident.embed_one()
            if time.monotonic() >= next_republish:
                next_republish = time.monotonic() + cfg.identity.republish_s
                ident.republish()
            ident.update_metrics()
    finally:
        sub.close()
        ident.close()


def main(argv: list[str] | None = None) -> int:
    return run_service("identity", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
