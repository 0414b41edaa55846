"""The source's frame rate, learnt from the frames themselves.

The tracker's lifetimes are in seconds (`max_lost_s`, the rematch gate's growth per second)
and its counts in frames, so it needs the rate the frames are captured at. The config's
`capture.fps` is 0 for "the source's own rate", which only the frames tell: `t_capture` and
`frame_id` of each Frame message. The estimate is the median period over the last `window`
pairs of frames seen (a pair that skips frames counts its frames), so a frame the tracker
skipped, a jittery timestamp or a stall of the source (a camera reconnecting) does not move it.
"""
from __future__ import annotations

import collections
import statistics

WINDOW = 64  # periods the median is taken over
MIN_PERIODS = 8  # periods before the estimate replaces the prior


class FrameRate:
    """A running estimate of frames per second from (frame_id, t_capture) of each frame seen."""

    def __init__(self, prior: float, window: int = WINDOW):
        self.prior = prior
        self._periods: collections.deque[float] = collections.deque(maxlen=window)
        self._last: tuple[int, float] | None = None

    def see(self, frame_id: int, t_capture: float) -> None:
        if self._last is not None:
            frames, seconds = frame_id - self._last[0], t_capture - self._last[1]
            if frames > 0 and seconds > 0:
                self._periods.append(seconds / frames)
        if self._last is None or frame_id > self._last[0]:
            self._last = (frame_id, t_capture)

    @property
    def fps(self) -> float:
        """The estimate; the prior until MIN_PERIODS periods were seen."""
        if len(self._periods) < MIN_PERIODS:
            return self.prior
        return 1.0 / statistics.median(self._periods)

    def reset(self) -> None:
        """A new capture run: its frames start over (the prior holds until they tell)."""
        self._periods.clear()
        self._last = None
