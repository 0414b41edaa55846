"""Sink kinds are `Sink` subclasses known by the registry, the one list every caller uses."""
from __future__ import annotations

import pytest

from facetrack import sink_cli
from services.sinks import KINDS, Sink
from services.sinks.mqtt_events import MqttEvents


def test_every_kind_is_registered_once_under_its_name():
    assert set(KINDS) == {"live", "privacy", "recorder", "jsonl", "mqtt", "rtsp"}
    for kind in KINDS:
        cls = Sink.registry[kind]
        assert issubclass(cls, Sink) and cls.kind == kind
        assert not getattr(cls, "__abstractmethods__", None), f"{kind}: abstract methods left"


def test_a_second_kind_of_the_same_name_is_refused():
    with pytest.raises(TypeError, match="sink kind 'mqtt' is already MqttEvents"):
        class Again(Sink, kind="mqtt"):  # noqa: F841 - defining it is the test
            pass
    assert Sink.registry["mqtt"] is MqttEvents


def test_the_command_line_lists_the_registered_kinds(capsys):
    assert sink_cli.main(["nonsense"]) != 0
    assert ", ".join(KINDS) in capsys.readouterr().err
