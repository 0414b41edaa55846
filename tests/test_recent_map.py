"""RecentMap: bounded per-track state heard on the bus."""
from __future__ import annotations

from common.recent import RecentMap


def test_keeps_the_most_recently_set_keys():
    names = RecentMap(3)
    for track_id in range(5):
        names.remember(track_id, f"face {track_id}")
    assert list(names) == [2, 3, 4]
    names.remember(2, "Ada")  # set again: now the newest
    names.remember(5, "Bob")
    assert dict(names) == {4: "face 4", 2: "Ada", 5: "Bob"}
