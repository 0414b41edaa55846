"""Sink kinds: what a sink process does with each frame that has its tracks.

A sink kind is an object with
  `needs_pixels` (bool): read the frame from the ring (the recorder does not),
  `latest_only` (bool): when behind, handle only the newest frame and skip the rest
      (a viewer wants the present; a recorder wants every frame),
  `start()`, `handle(paired: Paired)`, `close()`,
  `stats()`: its own counters for the metrics' `extra` map.
`services/sink.py` runs the bus loop and pairing around it (`pairing.py`).
"""
