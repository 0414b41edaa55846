"""A map that keeps only its most recently set entries: per-track state heard on the bus
(names from the identity service) must not grow with every track a 24/7 stack has seen."""
from __future__ import annotations

import collections


class RecentMap(collections.OrderedDict):
    """dict whose `remember` keeps at most `limit` keys, forgetting the least recently set."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def remember(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
