"""The watchdog acts on supervisord programs, never on a pid from another host.

A board in remote-detector mode under real supervisord: its `detector` program is the frame
forwarder. A remote detector (here a plain DEALER on loopback) sends its metrics once, as
service "detector", with a pid that on its own host is its own, and here happens to be the
forwarder's; then it falls silent past `detector.deadline_s`. The watchdog must report the
stage silent and leave the local forwarder alone (it used to map the pid to the local program
and kill it).
"""
from __future__ import annotations

import time

import zmq

from common.messages import Metrics, encode
from facetrack.stack import Stack
from stack_support import MetricsWatch, unique_id, wait_for


def test_relayed_metrics_with_a_local_pid_never_get_a_local_program_killed(tmp_path, free_port):
    endpoint = f"tcp://127.0.0.1:{free_port}"
    overrides = {
        "stack": {"id": unique_id("dog", tmp_path)},
        # silent after 4 periods (2 s), well past the 1.2 s deadline: by the time the stage is
        # reported silent, a kill would have been done
        "monitor": {"interval_s": 0.5, "prometheus_port": 0},
        "watchdog": {"silent_periods": 4},
        "detector": {"remote": endpoint, "deadline_s": 1.2},
    }
    autostart = {"capture": False, "tracker": False, "sink": False}
    with Stack(tmp_path / "board", overrides, autostart=autostart) as stack:
        stack.start(wait_for=("broker", "detector", "watchdog"))
        stack.wait_log("detector", "forwarding JPEG frames")
        forwarder = stack.status()["detector"][1]
        watch = MetricsWatch(stack)
        watch.wait("watchdog", lambda m: m.program == "watchdog")  # a local stage names its program
        remote = zmq.Context.instance().socket(zmq.DEALER)
        remote.setsockopt(zmq.LINGER, 0)
        remote.connect(endpoint)
        try:
            remote.send_multipart(encode(Metrics(
                service="detector", pid=forwarder, t=time.time(), frames_in=1, frames_out=1, fps=1.0, p50_ms=1.0,
                p99_ms=1.0, dropped=0, errors=0, cpu_percent=1.0, rss_bytes=1, program="detector")))
            relayed = watch.wait("detector", lambda m: m.pid == forwarder, timeout=30)
            assert relayed.program == ""  # the forwarder says: not a program of this board
            wait_for(lambda: any(s in stack.log("watchdog") for s in ("stage detector silent", "detector hung")), 30,
                     what="the silent remote reported")
            log = stack.log("watchdog")
            assert "detector hung" not in log, log[-2000:]
            assert "not a program of this supervisord" in log, log[-2000:]
            assert stack.status()["detector"] == ("RUNNING", forwarder)
        finally:
            remote.close(0)
            watch.close()
            stack.shutdown()
