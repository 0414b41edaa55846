"""The Raspberry Pi branch of `make run` on a fake board root and the stand-in camera.

A Pi is told by its device-tree model (common/pi.py); FACETRACK_BOARD_ROOT points the check at
a tree made here. The camera is tests/capture_fakes/picamera2 (picamera2 cannot run here);
`make check-pi` runs the same branch for real in an emulated arm64 userland.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import pi

REPO = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "capture_fakes"
PI5 = "Raspberry Pi 5 Model B Rev 1.0"


def board(root: Path, model: str, rel: str = "proc/device-tree/model") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.encode() + b"\0")  # the firmware's string ends in NUL, no newline
    return root


def test_pi_is_told_by_its_device_tree_model(tmp_path):
    assert pi.pi_model(board(tmp_path / "a", PI5)) == PI5
    assert pi.pi_model(board(tmp_path / "b", "Raspberry Pi 4 Model B Rev 1.5",
                             "sys/firmware/devicetree/base/model")) == "Raspberry Pi 4 Model B Rev 1.5"
    assert pi.pi_model(board(tmp_path / "c", "Pine64 RockPro64 v2.1")) == ""  # another arm64 board
    assert pi.pi_model(tmp_path / "x86") == ""  # no device tree at all


def choose(monkeypatch, tmp_path, cameras: int | None = 1, **env: str) -> tuple[str, str]:
    """`python -m common.pi source` as `make run` calls it: (stdout, stderr). cameras=None: no
    picamera2 importable (a package of that name that raises ImportError, as the missing one would,
    shadows any installed one: an emulated Pi has one system-wide)."""
    missing = tmp_path / "no-picamera2"
    (missing / "picamera2").mkdir(parents=True, exist_ok=True)
    (missing / "picamera2" / "__init__.py").write_text("raise ImportError(\"No module named 'picamera2'\")\n")
    paths = [str(REPO)] + ([str(FAKES)] if cameras is not None else [str(missing)])
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "FACETRACK_BOARD_ROOT": str(board(tmp_path, PI5)),
            "FAKE_PICAMERA2_CAMERAS": str(cameras or 0), **env}
    for key in ("FACETRACK_SET", "FACETRACK_CONFIG"):
        if key not in env:
            full.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "common.pi", "source"], env=full, capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    return proc.stdout.strip(), proc.stderr.strip()


def test_camera_attached_and_no_source_named_takes_the_camera(monkeypatch, tmp_path):
    out, line = choose(monkeypatch, tmp_path)
    assert out == "capture.source=picamera2://0"
    assert line == f"facetrack: source picamera2://0: {PI5} with camera imx708 attached and no source in the config"


def test_a_named_source_wins_over_the_camera(monkeypatch, tmp_path):
    out, line = choose(monkeypatch, tmp_path, FACETRACK_SET="sink.http_port=9000,capture.source=faces://2")
    assert out == "" and line == f"facetrack: source faces://2: the config names it ({PI5})"
    named = tmp_path / "mine.yaml"
    named.write_text("capture:\n  source: rtsp://cam.local/stream\n")
    out, line = choose(monkeypatch, tmp_path, FACETRACK_CONFIG=str(named))
    assert out == "" and "source rtsp://cam.local/stream: the config names it" in line
    unnamed = tmp_path / "ports.yaml"  # a config of its own that leaves the source alone
    unnamed.write_text("sink:\n  http_port: 9000\n")
    out, _ = choose(monkeypatch, tmp_path, FACETRACK_CONFIG=str(unnamed))
    assert out == "capture.source=picamera2://0"


def test_no_camera_or_no_picamera2_keeps_the_default_and_says_why(monkeypatch, tmp_path):
    out, line = choose(monkeypatch, tmp_path, cameras=0)
    assert out == "" and line == f"facetrack: source faces://4: no camera found on this {PI5} (picamera2 lists none)"
    out, line = choose(monkeypatch, tmp_path, cameras=None)
    assert out == "" and line.startswith(f"facetrack: source faces://4: no camera found on this {PI5} "
                                         "(picamera2 is not importable")


def test_elsewhere_nothing_is_chosen(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "common.pi", "source"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{FAKES}",
                               "FACETRACK_BOARD_ROOT": str(tmp_path)}, check=True)
    assert proc.stdout == proc.stderr == ""


def make(tmp_path: Path, board_root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "FACETRACK_BOARD_ROOT": str(board_root), **env}
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), f"VENV={tmp_path / 'venv'}",
                           f"PYTHON={sys.executable}", *args], env=full, capture_output=True, text=True)


def site_flag(venv: Path) -> str:
    cfg = dict(line.split(" = ", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if " = " in line)
    return cfg["include-system-site-packages"]


@pytest.mark.slow
def test_venv_sees_system_packages_only_on_a_pi(tmp_path):
    """`make venv` (what `make setup` and `make run` start with) on a Pi and elsewhere."""
    pi_root = board(tmp_path / "pi", PI5)
    done = make(tmp_path, pi_root, "venv", PYTHONPATH=str(FAKES))  # picamera2 importable: apt is not asked
    assert done.returncode == 0, done.stderr
    assert f"facetrack: {PI5}: the venv sees the system's packages" in done.stdout
    assert "python3-picamera2" not in done.stdout and site_flag(tmp_path / "venv") == "true"
    # an existing venv made without the flag is switched; apt failing is one line naming the package
    (tmp_path / "venv/pyvenv.cfg").write_text((tmp_path / "venv/pyvenv.cfg").read_text().replace(
        "include-system-site-packages = true", "include-system-site-packages = false"))
    done = make(tmp_path, pi_root, "venv", "SUDO=false")
    assert done.returncode == 0, done.stderr
    assert ("facetrack: could not install python3-picamera2 with apt; the Pi camera needs it "
            "(sudo apt install python3-picamera2)") in done.stdout.splitlines()
    assert site_flag(tmp_path / "venv") == "true"
    other = tmp_path / "x86"
    other.mkdir()
    done = make(other, other, "venv")
    assert done.returncode == 0, done.stderr
    assert site_flag(other / "venv") == "false" and "facetrack:" not in done.stdout


def test_make_run_asks_for_the_source_only_on_a_pi(tmp_path):
    """The run recipe (dry run): on a Pi through common.pi; elsewhere the plain supervisord line."""
    pi_run = make(tmp_path, board(tmp_path / "pi", PI5), "-n", "run", "SEQLOCK=", "STAMP=", "PY=python3")
    assert "-m common.pi source" in pi_run.stdout and "FACETRACK_SET=" in pi_run.stdout
    other = tmp_path / "x86"
    other.mkdir()
    plain = make(tmp_path, other, "-n", "run", "SEQLOCK=", "STAMP=", "PY=python3")
    assert "common.pi" not in plain.stdout
    assert "umask 077 && venv/bin/supervisord -n -c supervisord.conf" in plain.stdout.replace(f"{tmp_path}/", "")


def test_a_host_build_on_an_arm_board_looks_for_an_arm_tuning_database(monkeypatch):
    """A host build names no triple; on an aarch64 board whose CPU LLVM cannot name (an emulated
    Pi: `make check-pi` found "x86-generic" there) it must still look in an aarch64 folder."""
    import tvm
    from tvm.target import codegen

    from models.cpu import tuning_target

    monkeypatch.setattr(codegen, "llvm_get_system_triple", lambda: "aarch64-unknown-linux-gnu")
    assert tuning_target(tvm.target.Target({"kind": "llvm", "mcpu": "generic"})) == "aarch64-generic"
    assert tuning_target(tvm.target.Target({"kind": "llvm", "mcpu": "cortex-a76"})) == "pi5-cortex-a76"
