"""A sink that stops reading never slows the publisher, and counts what it missed.

The sink is frozen with SIGSTOP while the test publishes a burst far larger than the bus
buffers; the publisher must never block: the burst completes (a generous liveness bound; how
long one publish takes is printed, never asserted: shared CPUs). After SIGCONT the sink must
catch up to the newest frame and account for every tracks frame id: processed or counted as
dropped.
"""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from sink_support import get_json

BURST = 4000


def burst(stack, n: int) -> tuple[float, float]:
    """Publish `n` frames as fast as possible; (total seconds, 99th percentile of one publish)."""
    times = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        stack.publish()
        times.append(time.perf_counter() - t)
    return time.perf_counter() - t0, float(np.percentile(times, 99))


@pytest.mark.parametrize("kind", ["live", "recorder"])
def test_stopped_sink_never_slows_the_publisher_and_counts_its_drops(stack, kind):
    args = ["--kind", "live", "--port", "0"] if kind == "live" else ["--kind", "recorder", "--out", str(stack.tmp / "rec")]
    sink = stack.sink(*args)
    service = f"sink-{kind}"
    stack.publish_until(lambda: getattr(stack.newest_metrics(service), "frames_out", 0) > 0)
    warmup = stack.next_id
    baseline, baseline_p99 = burst(stack, BURST // 4)  # sink running, reading

    sink.proc.send_signal(signal.SIGSTOP)
    done: list[tuple[float, float]] = []
    publisher = threading.Thread(target=lambda: done.append(burst(stack, BURST)), daemon=True)
    publisher.start()
    publisher.join(120)  # a publisher that blocked on the stopped sink would never finish
    assert done, f"{BURST} publishes did not finish in 120 s with the sink stopped: the publisher blocks"
    stopped, p99 = done[0]
    print(f"one publish: {1000 * stopped / BURST:.3f} ms mean, p99 {1000 * p99:.2f} ms with the sink stopped; "
          f"{1000 * baseline / (BURST // 4):.3f} ms, p99 {1000 * baseline_p99:.2f} ms with it reading")
    sink.proc.send_signal(signal.SIGCONT)

    stack.publish_n(20, fps=50)
    last = stack.next_id - 1
    m = stack.wait_metrics(service, lambda m: m.frames_out + m.dropped >= last + 1 - warmup, timeout=15)
    assert m.dropped > 0 and m.extra["gap"] > 0
    assert last + 1 - warmup <= m.frames_out + m.dropped <= last + 1  # every id seen is accounted for
    if kind == "live":
        assert get_json(sink.url() + "tracks.json")["frame_id"] == last  # caught up with the present
    assert sink.stop() == 0
