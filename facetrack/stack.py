"""Run a whole stack under the real supervisord, in a run directory of its own.

Tests and benchmarks need stacks that do not collide with `make run` or with each other:
this renders the checkout's own `supervisord.conf` with its run directory moved (the file's
`%(here)s/run` paths) and writes a stack config (the default plus overrides) there, so the
programs, commands and options are exactly the shipped ones.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

from common.config import DEFAULT_CONFIG, ROOT, load_config

log = logging.getLogger(__name__)

SUPERVISORD_CONF = ROOT / "supervisord.conf"
VENV_BIN = ROOT / ".venv" / "bin"


class Stack:
    """One stack: `start()`, `ctl(...)`, `shutdown()`; use as a context manager."""

    def __init__(self, run_dir: Path, overrides: dict[str, dict] | None = None,
                 autostart: dict[str, bool] | None = None):
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        data = yaml.safe_load(DEFAULT_CONFIG.read_text())
        for section, values in (overrides or {}).items():
            data.setdefault(section, {}).update(values)
        data["stack"]["run_dir"] = str(self.run_dir)
        self.config_path = self.run_dir / "stack.yaml"
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.config = load_config(self.config_path)
        self.conf_path = self.run_dir / "supervisord.conf"
        self.conf_path.write_text(self._render(autostart or {}))
        self.proc: subprocess.Popen | None = None

    def _render(self, autostart: dict[str, bool]) -> str:
        text = SUPERVISORD_CONF.read_text()
        text = text.replace("%(here)s/run", str(self.run_dir)).replace("%(here)s", str(ROOT))
        for program, on in autostart.items():
            section = f"[program:{program}]\n"
            if section not in text:
                raise ValueError(f"supervisord.conf has no program {program}")
            head, tail = text.split(section, 1)
            body, sep, rest = tail.partition("\n[")
            body = re.sub(r"^autostart=.*\n", "", body, flags=re.M)
            text = head + section + f"autostart={'true' if on else 'false'}\n" + body + sep + rest
        return text

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, FACETRACK_CONFIG=str(self.config_path))
        env.pop("FACETRACK_SET", None)
        return env

    def start(self, wait_for: tuple[str, ...] = ("broker",), timeout: float = 60) -> "Stack":
        self.proc = subprocess.Popen([str(VENV_BIN / "supervisord"), "-n", "-c", str(self.conf_path)],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.wait_running(wait_for, timeout)
        return self

    def ctl(self, *args: str, check: bool = False) -> str:
        out = subprocess.run([str(VENV_BIN / "supervisorctl"), "-c", str(self.conf_path), *args],
                             env=self.env, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"supervisorctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def status(self) -> dict[str, tuple[str, int | None]]:
        """program -> (state, pid)."""
        result = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                match = re.search(r"pid (\d+)", line)
                result[parts[0]] = (parts[1], int(match.group(1)) if match else None)
        return result

    def wait_running(self, programs: tuple[str, ...], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {self.proc.returncode}")
            status = self.status()
            if all(status.get(p, ("",))[0] == "RUNNING" for p in programs):
                return
            time.sleep(0.2)
        raise TimeoutError(f"programs not RUNNING after {timeout}s: {self.status()}")

    def wait_log(self, program: str, text: str, timeout: float = 60) -> None:
        """Wait until `program`'s log shows `text` (e.g. the detector's "model loaded")."""
        deadline = time.monotonic() + timeout
        while text not in self.log(program):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{program} did not log {text!r} within {timeout}s: {self.log(program)[-1000:]}")
            time.sleep(0.2)

    def log(self, program: str) -> str:
        path = self.run_dir / "logs" / f"{program}.log"
        return path.read_text() if path.exists() else ""

    def shutdown(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ctl("shutdown")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
