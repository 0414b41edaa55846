"""Sink kinds: what a sink process does with each frame that has its tracks.

Each kind is a `Sink` subclass (base.py) in a module of its own, registered by its `kind`;
importing this package imports them all, so `Sink.registry` knows every kind.
`services/sink.py` runs the bus loop and pairing around it (`pairing.py`).
"""
from services.sinks import jsonl, live_view, mqtt_events, privacy, recorder, stream  # noqa: F401 - registers the kinds
from services.sinks.base import Sink

KINDS = tuple(Sink.registry)

__all__ = ["KINDS", "Sink"]
