"""Which stages are down, as the watchdog's StackHealth messages say, for every place that shows it.

`facetrack monitor`, the live view's /healthz and the mqtt sink's status topic all ask this one
helper, so they agree. The watchdog is the one that knows supervisord's programs; when its own
messages stop for `watchdog.silent_periods` monitor periods, the watchdog is reported down too.
Before its first message nothing is claimed (a stack may run without a watchdog).
"""
from __future__ import annotations

import time

from common.config import Config
from common.messages import StackHealth


class HealthView:
    def __init__(self, cfg: Config, clock=time.monotonic):
        self.stale_after = cfg.watchdog.silent_periods * cfg.monitor.interval_s
        self.clock = clock
        self.latest: StackHealth | None = None
        self._at = 0.0

    def update(self, msg: StackHealth) -> None:
        self.latest, self._at = msg, self.clock()

    def down(self) -> dict[str, str]:
        """program -> why, for every stage that should run and does not ({} when all run or nothing is known)."""
        if self.latest is None:
            return {}
        if self.clock() - self._at > self.stale_after:
            return {"watchdog": "silent"}
        return dict(self.latest.down)
