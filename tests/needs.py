"""What a test needs from the machine, and the one way it says so when it is missing.

Under CI (the variable `CI` set) a missing need fails the test with one line naming what is
missing and how to get it; elsewhere the test is skipped with that same line.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from models.dataset import DATA_DIR, DATA_HINT


def under_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(what: str, how: str) -> None:
    """Stop the test: `what` is missing, `how` gets it. Fails under CI, skips elsewhere."""
    line = f"{what} is missing: {how}"
    if under_ci():
        pytest.fail(line, pytrace=False)
    pytest.skip(line)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m"):
    """A tmpfs of `size` mounted at `path` (made if missing) for the block: a small, full disk."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        missing(f"a {size} tmpfs mount (root and mount(8))", "run the suite as root, as CI does")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def data(*parts: str) -> Path:
    """A path under the test data (models.dataset.DATA_DIR), which must exist."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        missing(f"test data {path}", DATA_HINT)
    return path


def tool(name: str, package: str, target: str = "apt") -> str:
    """The path of a command-line tool that a Debian package of the Makefile installs."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} (Debian package {package})", f"`make {target}` installs it")
    return path
