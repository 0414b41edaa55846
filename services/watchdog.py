"""The watchdog: restarts a hung detector through supervisord, reports stages that fall silent.

    python -m services.watchdog [--config FILE] [--set K=V]     (program `watchdog`)

It subscribes to `metrics`, and serves every stage's newest metrics for Prometheus
(common/prometheus.py, `monitor.prometheus_port`) behind the `http:` credentials or metrics
token (common/http_server.py). Every stage publishes one Metrics message per monitor period
from its main loop, so a loop that stops turning (a process stuck in one inference, stopped,
deadlocked) stops its metrics while supervisord still calls it RUNNING.

- Silent stages: no metrics for `watchdog.silent_periods` periods gives one WARNING line
  ("stage X silent for N s (program P: STATE)") and one INFO line when it reports again; the
  watchdog's own metrics carry `silent_stages` and `silent_<service>` = 1/0 (`facetrack
  monitor` shows them). A stage whose program was stopped on purpose
  is reported once and then no longer watched.
- Stages map to supervisord programs by the program named in their metrics (set from
  supervisord's environment), never by pid: a remote detector's metrics, relayed by the frame
  forwarder, carry another host's pid, which may be a local process's. Relayed metrics name no
  program: such a stage is reported silent, never killed.
- Stages down: every check, the supervisord programs that should run (autostart, or started by
  hand and not stopped since) and those of them that do not (not RUNNING or STARTING, or silent)
  go on the bus as one StackHealth message, which `facetrack monitor`, the live view's /healthz
  and the mqtt sink's status topic show (common/health.py); one WARNING line when a program
  goes down, one INFO line when it is back. The watchdog's metrics carry `down_stages`.
- Hung detector: the same process (the program's pid, still RUNNING under supervisord) silent for
  `detector.deadline_s` is killed with SIGKILL through supervisord's XML-RPC interface
  (`supervisor.signalProcess` over the unix socket in $SUPERVISOR_SERVER_URL), and supervisord
  starts it again (autorestart; the watchdog calls `startProcess` if it does not). SIGKILL,
  because a process stuck in native code does not act on SIGTERM. Restarts back off: the
  n-th restart in a row waits `watchdog.backoff_s * 2**(n-1)` (at most `backoff_max_s`)
  after the previous one; a detector that stays healthy for `backoff_max_s` starts afresh.
  A detector is judged only after its first metrics, so a slow model load is never a hang.
- Board health: once a period it reads this board's (common/board.py); a board the firmware
  slows down (under-voltage, frequency capped, throttled, soft temperature limit) gives one
  WARNING line naming why, and one INFO line when it ends.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import typing
import xmlrpc.client
from dataclasses import dataclass

import http.client
from http import HTTPStatus

from common.board import ThrottleWatch, read_health
from common.bus import Subscriber
from common.http_access import Access
from common.http_server import GuardedHandler, GuardedServer
from common.messages import Metrics, StackHealth
from common.prometheus import CONTENT_TYPE as PROMETHEUS_TYPE, StackMetrics
from common.service import InputError, ServiceContext, run_service

log = logging.getLogger("watchdog")

RESTARTABLE = "detector"  # programs whose name contains this get the deadline and restarts


class Supervisor:
    """supervisord's XML-RPC interface over its unix socket (or http://)."""

    def __init__(self, url: str):
        from supervisor.xmlrpc import SupervisorTransport

        self.url = url
        self.rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, url))

    def processes(self) -> dict[str, dict]:
        """program name -> getProcessInfo dict (statename, pid, start, ...)."""
        out: dict[str, dict] = {}
        infos = typing.cast(list[dict], self.rpc.supervisor.getAllProcessInfo())  # one struct per process
        for info in infos:
            name = info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"
            out[name] = info
        return out

    def reset(self) -> None:
        """Drop the connection after a failed call: the transport would refuse every later one
        (http.client.CannotSendRequest) even once supervisord is back."""
        self.rpc("close")()

    def configs(self) -> dict[str, dict]:
        """program name -> getAllConfigInfo dict (autostart, ...): what supervisord is told to run."""
        infos = typing.cast(list[dict], self.rpc.supervisor.getAllConfigInfo())
        return {info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}": info
                for info in infos}

    def kill(self, name: str) -> None:
        self.rpc.supervisor.signalProcess(name, "KILL")

    def start(self, name: str) -> None:
        self.rpc.supervisor.startProcess(name, False)


def supervisor_url(ctx: ServiceContext) -> str:
    """supervisord tells its children where it listens; outside it, the run dir's socket."""
    return os.environ.get("SUPERVISOR_SERVER_URL") or f"unix://{ctx.config.run_dir / 'supervisor.sock'}"


UP_STATES = ("RUNNING", "STARTING")


def stages_down(configs: dict[str, dict], processes: dict[str, dict],
                silent: set[str]) -> tuple[list[str], dict[str, str]]:
    """(programs that should run, {program: why} for those that do not).

    A program should run when supervisord starts it by itself (autostart) or when it was started
    by hand and not stopped since (its state is anything but STOPPED). `silent`: programs whose metrics stopped
    while their process still runs.
    """
    expected = sorted(name for name, info in processes.items()
                      if configs.get(name, {}).get("autostart") or info["statename"] != "STOPPED")
    down = {name: processes[name]["statename"] for name in expected if processes[name]["statename"] not in UP_STATES}
    for name in silent:
        if name in expected and name not in down:
            down[name] = "silent"
    return expected, down


@dataclass
class Stage:
    service: str
    program: str              # the supervisord program it runs as here; "" for none (remote, or outside it)
    pid: int
    last_seen: float          # monotonic time of its newest metrics
    silent: bool = False
    silent_since: float = 0.0


@dataclass
class Backoff:
    """When the next restart of one program may happen."""
    base_s: float
    max_s: float
    count: int = 0            # restarts in a row
    last: float = float("-inf")

    def wait_s(self) -> float:
        return 0.0 if self.count == 0 else min(self.max_s, self.base_s * 2 ** (self.count - 1))

    def ready(self, now: float) -> bool:
        return now >= self.last + self.wait_s()

    def restarted(self, now: float) -> None:
        self.count += 1
        self.last = now

    def healthy(self, now: float) -> None:
        if self.count and now - self.last >= self.max_s:
            self.count = 0


class Watchdog:
    def __init__(self, ctx: ServiceContext, supervisor: Supervisor | None):
        cfg = ctx.config
        self.ctx = ctx
        self.supervisor = supervisor
        self.period = cfg.monitor.interval_s
        self.silent_after = cfg.watchdog.silent_periods * self.period
        self.deadline = cfg.detector.deadline_s
        self.stages: dict[str, Stage] = {}
        self.backoff: dict[str, Backoff] = {}
        self.restarts = 0
        self.deferred_logged: set[str] = set()
        self.rpc_errors = 0
        self.down: dict[str, str] = {}

    def seen(self, msg: Metrics, now: float) -> None:
        if msg.service == self.ctx.name:
            return
        stage = self.stages.get(msg.service)
        if stage is None:
            log.info("watching stage %s (pid %d, %s)", msg.service, msg.pid,
                     f"program {msg.program}" if msg.program else "not a program of this supervisord")
            self.stages[msg.service] = Stage(msg.service, msg.program, msg.pid, now)
            return
        if stage.silent:
            log.info("stage %s reporting again after %.1f s (pid %d)", msg.service, now - stage.silent_since, msg.pid)
            stage.silent = False
        stage.program, stage.pid, stage.last_seen = msg.program, msg.pid, now

    def _programs(self) -> dict[str, dict] | None:
        if self.supervisor is None:
            return None
        try:
            return self.supervisor.processes()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            self.supervisor.reset()
            self.rpc_errors += 1
            if self.rpc_errors == 1 or self.rpc_errors % 100 == 0:
                log.warning("supervisord at %s not reachable (%d times): %s", self.supervisor.url, self.rpc_errors, exc)
            return None

    def check(self, now: float) -> StackHealth | None:
        """Watch every stage once; the stack's health (None while supervisord cannot be asked)."""
        programs = self._programs()
        silent: set[str] = set()
        for service, stage in list(self.stages.items()):
            quiet = now - stage.last_seen
            info = programs.get(stage.program) if programs is not None and stage.program else None
            # The program still runs the process that sent the metrics (not stopped, not restarted).
            program = stage.program if info is not None and info["pid"] == stage.pid else None
            state = info["statename"] if program and info is not None else None
            if quiet > self.silent_after and not stage.silent:
                stage.silent, stage.silent_since = True, stage.last_seen
                where = (f"program {program}: {state}" if program else
                         "not a program of this supervisord" if not stage.program else
                         f"program {stage.program} no longer runs it" if programs is not None else
                         "supervisord not reachable")
                log.warning("stage %s silent for %.1f s (pid %d, %s)", service, quiet, stage.pid, where)
            if program and stage.silent:
                silent.add(program)
            if programs is not None and program is None and stage.silent:
                # The process is gone (stopped on purpose, or restarted under a new pid, whose
                # metrics re-register it), or not ours to act on: reported once, no longer watched.
                del self.stages[service]
                continue
            if program and RESTARTABLE in program:
                self._deadline(service, stage, program, state, quiet, now)
        return None if programs is None else self._health(programs, silent)

    def _health(self, programs: dict[str, dict], silent: set[str]) -> StackHealth | None:
        assert self.supervisor is not None  # the programs came from it
        try:
            configs = self.supervisor.configs()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            self.supervisor.reset()  # counted and logged by the next _programs() that fails
            return None
        expected, down = stages_down(configs, programs, silent)
        for name, why in down.items():
            if self.down.get(name) != why:
                log.warning("stage %s is down: %s", name, why)
        for name in self.down.keys() - down.keys():
            log.info("stage %s is up again (%s)", name, programs.get(name, {}).get("statename", "gone"))
        self.down = down
        return StackHealth(t=time.time(), expected=expected, down=down)

    def _deadline(self, service: str, stage: Stage, program: str, state: str | None, quiet: float, now: float) -> None:
        backoff = self.backoff.setdefault(program, Backoff(self.ctx.config.watchdog.backoff_s,
                                                           self.ctx.config.watchdog.backoff_max_s))
        if quiet <= self.deadline:
            backoff.healthy(now)
            self.deferred_logged.discard(program)
            return
        if state != "RUNNING":
            return
        if not backoff.ready(now):
            if program not in self.deferred_logged:
                self.deferred_logged.add(program)
                log.warning("%s hung again (pid %d, silent %.1f s): restart deferred %.1f s (back-off)",
                            program, stage.pid, quiet, backoff.last + backoff.wait_s() - now)
            return
        log.error("%s hung: pid %d silent for %.1f s (deadline %.1f s): killing it through supervisord "
                  "(restart %d in a row)", program, stage.pid, quiet, self.deadline, backoff.count + 1)
        assert self.supervisor is not None  # the program's state came from it
        try:
            self.supervisor.kill(program)
        except (OSError, xmlrpc.client.Error) as exc:
            log.error("%s: supervisord could not kill pid %d: %s", program, stage.pid, exc)
            return
        backoff.restarted(now)
        self.restarts += 1
        self.deferred_logged.discard(program)
        self._ensure_started(program)
        del self.stages[service]  # the new process registers with its first metrics

    def _ensure_started(self, program: str) -> None:
        """supervisord restarts a killed autorestart program; start it if it did not."""
        assert self.supervisor is not None  # it killed the program
        for _ in range(20):
            time.sleep(0.1)
            try:
                state = self.supervisor.processes().get(program, {}).get("statename")
                if state in ("STARTING", "RUNNING", "BACKOFF"):
                    return
                if state in ("EXITED", "STOPPED", "FATAL"):
                    self.supervisor.start(program)
                    return
            except xmlrpc.client.Fault as exc:
                log.warning("%s: start after kill: %s", program, exc.faultString)
                return
            except OSError:
                return

    def extra(self) -> dict[str, float]:
        out: dict[str, float] = {"restarts": self.restarts, "silent_stages": sum(s.silent for s in self.stages.values()),
               "down_stages": len(self.down),
               "watched_stages": len(self.stages), "rpc_errors": self.rpc_errors}
        out.update({f"silent_{s.service}": float(s.silent) for s in self.stages.values()})
        return out


class _Exporter(GuardedServer):
    def __init__(self, address, access: Access, cfg, metrics: StackMetrics):
        super().__init__(address, _ExporterHandler, access, cfg.http, "Prometheus exporter")
        self.metrics = metrics


class _ExporterHandler(GuardedHandler):
    """GET /metrics: the stack's metrics (the access check ran before, in GuardedHandler)."""

    @property
    def timeout(self) -> float:  # type: ignore[override]  # typeshed: a plain class variable; setup() reads it
        return self.server.waiting.timeout_s

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/metrics":
            self.server.counters.count("http_refused", f"{self.address_string()}: 404 {self.path[:80]!r}")
            status, ctype, body = HTTPStatus.NOT_FOUND, "text/plain", b"not found: try /metrics\n"
        else:
            status, ctype, body = HTTPStatus.OK, PROMETHEUS_TYPE, self.server.metrics.render()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            log.debug("exporter client %s went away", self.address_string())


def start_exporter(cfg, metrics: StackMetrics) -> GuardedServer | None:
    """Serve every stage's metrics for Prometheus at monitor.prometheus_host:port/metrics (port 0: off),
    behind the `http:` credentials or metrics token (common/http_access.py; open on loopback when none).

    A port that cannot be bound, bad credentials or TLS files, or a non-loopback address with
    nothing to guard it are one ERROR line; the watchdog goes on (it guards the detector) without
    the exporter.
    """
    host, port = cfg.monitor.prometheus_host, cfg.monitor.prometheus_port
    if not port:
        return None
    try:
        access = Access.from_config(cfg.http, host, port, "Prometheus exporter", "monitor.prometheus_host",
                                    needs_credentials=False, open_paths=())
        server = _Exporter((host, port), access, cfg, metrics)
    except InputError as exc:
        log.error("%s; the exporter is off", exc)
        return None
    except OSError as exc:
        log.error("Prometheus exporter not started: cannot listen on %s:%d (%s)", host, port, exc.strerror or exc)
        return None
    threading.Thread(target=server.serve_forever, name="exporter", daemon=True).start()
    log.info("Prometheus metrics of every stage at %s://%s:%d/metrics", server.scheme, host, server.server_address[1])
    return server


def serve(ctx: ServiceContext) -> None:
    cfg = ctx.config
    url = supervisor_url(ctx)
    supervisor = Supervisor(url)
    log.info("supervisord at %s; detector deadline %.1f s, silent after %d periods of %.1f s",
             url, cfg.detector.deadline_s, cfg.watchdog.silent_periods, cfg.monitor.interval_s)
    dog = Watchdog(ctx, supervisor)
    metrics = StackMetrics(cfg.monitor.interval_s, cfg.watchdog.silent_periods)
    exporter = start_exporter(cfg, metrics)
    sub = Subscriber(cfg.bus.subscribe, [Metrics.TOPIC], hwm=max(cfg.bus.hwm, 1000), stats=ctx.stats)
    stats = ctx.stats
    next_check = time.monotonic() + cfg.monitor.interval_s
    throttle = ThrottleWatch(log)
    throttle.update(read_health())
    try:
        while not ctx.stop.is_set():
            batch = sub.batch(timeout_ms=200)
            now = time.monotonic()
            for m in batch.messages:
                stats.frames_in += 1
                dog.seen(m, now)
                metrics.update(m)
            if now >= next_check:
                next_check = now + min(cfg.monitor.interval_s, cfg.detector.deadline_s / 4)
                t0 = time.perf_counter()
                health = dog.check(now)
                if health is not None:
                    ctx.publisher.send(health)
                throttle.update(read_health())
                stats.processed((time.perf_counter() - t0) * 1000)
            stats.extra.clear()  # stages no longer watched leave no stale flags
            stats.extra.update(dog.extra())
            if exporter is not None:
                stats.extra.update(exporter.counters.counts)
            ctx.metrics.tick()
    finally:
        sub.close()
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()


def main(argv: list[str] | None = None) -> int:
    return run_service("watchdog", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
