"""Which stages are down, from what supervisord says (its getAllConfigInfo and getAllProcessInfo
dicts, as the watchdog gets them), and how every consumer reads the watchdog's word."""
from __future__ import annotations

from common.config import DEFAULT_CONFIG, load_config
from common.health import HealthView
from common.messages import StackHealth
from services.watchdog import stages_down


def test_a_stage_that_should_run_and_does_not_is_down():
    configs = {name: {"autostart": auto} for name, auto in (
        ("capture", True), ("detector", True), ("tracker", True), ("sink", True), ("broker", True),
        ("sink-mqtt", False), ("sink-rtsp", False), ("identity", False))}
    processes = {name: {"statename": state} for name, state in (
        ("capture", "STOPPED"),     # stopped by hand, but supervisord starts it by itself: should run
        ("detector", "FATAL"),      # gave up restarting
        ("tracker", "STARTING"),    # on its way: up
        ("sink", "RUNNING"),        # running, but its metrics stopped (below)
        ("broker", "BACKOFF"),      # between restarts
        ("sink-mqtt", "EXITED"),    # started by hand, then it died
        ("sink-rtsp", "STOPPED"),   # never asked for
        ("identity", "RUNNING"))}   # started by hand, running
    expected, down = stages_down(configs, processes, silent={"sink", "sink-rtsp"})
    assert expected == ["broker", "capture", "detector", "identity", "sink", "sink-mqtt", "tracker"]
    assert down == {"capture": "STOPPED", "detector": "FATAL", "broker": "BACKOFF", "sink-mqtt": "EXITED",
                    "sink": "silent"}


def test_consumers_read_the_watchdogs_word_and_call_it_down_when_it_stops():
    now = [0.0]
    view = HealthView(load_config(DEFAULT_CONFIG), clock=lambda: now[0])  # silent after 3 periods of 1 s
    assert view.down() == {}  # no watchdog heard yet: nothing is claimed
    view.update(StackHealth(t=0.0, expected=["capture", "detector"], down={"detector": "FATAL"}))
    now[0] = 2.9
    assert view.down() == {"detector": "FATAL"}
    now[0] = 3.1
    assert view.down() == {"watchdog": "silent"}
