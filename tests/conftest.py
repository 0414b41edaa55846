"""Shared fixtures: a real XSUB/XPUB proxy on ipc sockets in a temporary run directory."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import zmq

from common.bus import run_proxy


@pytest.fixture
def proxy(tmp_path):
    """A running proxy; yields (publish_endpoint, subscribe_endpoint)."""
    publish, subscribe = f"ipc://{tmp_path}/pub.sock", f"ipc://{tmp_path}/sub.sock"
    ctx = zmq.Context()
    thread = threading.Thread(target=run_proxy, args=(publish, subscribe, 50, ctx), daemon=True)
    thread.start()
    time.sleep(0.1)
    yield publish, subscribe
    ctx.term()
    thread.join(timeout=5)


@pytest.fixture
def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
