"""The bus through a real proxy: delivery, malformed messages, no back-pressure."""
from __future__ import annotations

import time

import zmq

from common.bus import Publisher, Subscriber
from common.messages import Frame, Tracks


def frame(i: int) -> Frame:
    return Frame(stack="t", frame_id=i, slot=i % 4, seq=2, ring_id=1, t_capture=time.time(),
                 width=8, height=8, source_pos=i)


def connected(pub: Publisher, sub: Subscriber) -> None:
    """Wait for the subscription to travel through the proxy (ZMQ's slow joiner)."""
    for _ in range(100):
        pub.send(frame(-1))
        if sub.recv(timeout_ms=50) is not None:
            sub.drain()
            return
    raise AssertionError("subscriber never connected")


def test_messages_flow_by_topic(proxy):
    publish, subscribe = proxy
    pub = Publisher(publish, hwm=50)
    sub = Subscriber(subscribe, [Frame.TOPIC], hwm=50)
    connected(pub, sub)
    pub.send(Tracks(frame_id=1, t_capture=0.0, t_tracked=0.0, tracks=[]))
    for i in range(5):
        pub.send(frame(i))
    got = [sub.recv(timeout_ms=1000) for _ in range(5)]
    assert [m.frame_id for m in got] == list(range(5))
    assert sub.recv(timeout_ms=100) is None  # tracks were not subscribed
    pub.close()
    sub.close()


def test_malformed_messages_are_counted_and_skipped(proxy):
    publish, subscribe = proxy
    pub = Publisher(publish, hwm=50)
    sub = Subscriber(subscribe, [b""], hwm=1000)
    connected(pub, sub)
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.connect(publish)
    time.sleep(0.2)
    for parts in ([b"frame", b"\xc1"], [b"frame"], [b"garbage", b"x"], [b"frame", b"\x80", b"extra"]):
        raw.send_multipart(parts)
    pub.send(frame(7))  # from another socket: it may overtake the malformed ones
    got, deadline = [], time.monotonic() + 10
    while (sub.malformed < 4 or not got) and time.monotonic() < deadline:
        msg = sub.recv(timeout_ms=200)
        if msg is not None:
            got.append(msg.frame_id)
    assert got == [7]
    assert sub.malformed == 4
    raw.close(0)
    pub.close()
    sub.close()


def test_slow_subscriber_never_blocks_publisher(proxy):
    publish, subscribe = proxy
    pub = Publisher(publish, hwm=50)
    sleeper = Subscriber(subscribe, [Frame.TOPIC], hwm=5)  # never reads
    reader = Subscriber(subscribe, [Frame.TOPIC], hwm=50)
    connected(pub, reader)
    connected(pub, sleeper)
    for i in range(20000):  # would hang here if PUB blocked on the sleeper
        pub.send(frame(i))
    assert reader.recv(timeout_ms=1000) is not None
    queued = len(sleeper.drain())
    assert queued < 20000 * 0.5, f"the stalled subscriber was given {queued} of 20000 messages: no HWM"
    pub.close()
    sleeper.close()
    reader.close()
