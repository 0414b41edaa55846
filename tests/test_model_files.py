"""A bad model file is refused with one clear line; the Pi 5 cross build is an aarch64 ELF."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.build import EM_AARCH64, Builder, build, check_elf
from models.runtime import ModelFileError, load_detector
from models.weights import fetch
from needs import missing, tool

AARCH64_START_FILES = Path("/usr/aarch64-linux-gnu/lib/crti.o")  # what the cross linker needs


@pytest.fixture(scope="module")
def built():
    fetch()
    return build(["full"], ["torchscript", "onnx", "llvm"])


def _expect_error(model_dir, backend, *words):
    with pytest.raises(ModelFileError) as err:
        load_detector("full", backend, model_dir=model_dir)
    msg = str(err.value)
    assert "\n" not in msg and str(model_dir / "full") in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("backend,name", [("tvm", "llvm.so"), ("torchscript", "model.ts"),
                                          ("onnxruntime", "model.onnx")])
def test_bad_model_files(built, tmp_path, backend, name):
    (tmp_path / "full").mkdir()
    _expect_error(tmp_path, backend, name, "missing", "build-model")
    good = (built["full", "onnx"].parent / name).read_bytes()
    (tmp_path / "full" / name).write_bytes(good[: len(good) // 2])
    _expect_error(tmp_path, backend, name, "truncated")
    (tmp_path / "full" / name).write_bytes(b"\x00garbage" * 512)
    _expect_error(tmp_path, backend, name)


def test_another_models_file_is_refused(built, tmp_path):
    short = build(["short"], ["onnx"])["short", "onnx"]
    (tmp_path / "full").mkdir()
    shutil.copy(short, tmp_path / "full" / "model.onnx")
    _expect_error(tmp_path, "onnxruntime", "model.onnx", "the full model")


def test_second_build_is_cached_and_a_stale_manifest_rebuilds(built, tmp_path):
    """Judged by the files: built once, an artefact is not written again; a manifest that does not
    describe it (another build's, an edited one) makes it built again."""
    llvm = built["full", "llvm"]
    stamp = llvm.stat().st_mtime_ns
    assert build(["full"], ["llvm"])["full", "llvm"] == llvm and llvm.stat().st_mtime_ns == stamp
    b = Builder("full", build_dir=tmp_path)
    onnx = b.ensure("onnx")
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "full").iterdir()}
    assert Builder("full", build_dir=tmp_path).ensure("onnx") == onnx
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "full").iterdir()} == stamps
    manifest = json.loads((tmp_path / "full" / "manifest.json").read_text())
    manifest["onnx"]["key"] = "0" * 64
    (tmp_path / "full" / "manifest.json").write_text(json.dumps(manifest))
    Builder("full", build_dir=tmp_path).ensure("onnx")
    assert onnx.stat().st_mtime_ns != stamps[onnx.name]


def test_aarch64_cross_build_is_an_arm64_elf(built):
    tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    if not AARCH64_START_FILES.is_file():
        missing(f"the aarch64 C start files {AARCH64_START_FILES} (Debian package libc6-dev-arm64-cross)",
                "`make apt` installs it")
    path = build(["full"], ["aarch64"])["full", "aarch64"]
    check_elf(path, EM_AARCH64)
    with pytest.raises(RuntimeError):
        check_elf(built["full", "llvm"], EM_AARCH64)
