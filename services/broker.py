"""The stack's message broker: an XSUB/XPUB proxy that every service connects to.

It holds no state, so it can restart under supervisord and publishers and subscribers
reconnect by themselves (ZMQ retries connections).
"""
from __future__ import annotations

import sys
import threading

import zmq

from common.bus import run_proxy
from common.service import ServiceContext, run_service


def serve(ctx: ServiceContext) -> None:
    bus = ctx.config.bus
    zctx = zmq.Context()
    proxy = threading.Thread(target=run_proxy, args=(bus.publish, bus.subscribe, bus.hwm, zctx),
                             name="proxy", daemon=True)
    proxy.start()
    while not ctx.stop.wait(ctx.config.monitor.interval_s / 2):
        ctx.metrics.tick()  # cpu and rss of the proxy; and the watchdog sees it is alive
    zctx.term()  # the proxy raises ContextTerminated, closes its sockets and returns
    proxy.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    return run_service("broker", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
