"""`backend: auto`, and model libraries checked against this CPU and build manifests that cannot tear."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from models.auto import HOW_TO_TUNE, choose, time_detector
from models.build import BUILD_DIR, Builder, read_manifest, write_manifest
from models.runtime import ModelFileError, load_detector

HOST_FLAGS = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")).split(":", 1)[1].split())


@pytest.fixture(scope="module")
def untuned(tmp_path_factory) -> Path:
    """`short` built here with every tuning database moved away (an empty tuning folder)."""
    build_dir = tmp_path_factory.mktemp("build")
    made = BUILD_DIR / "short"
    if (made / "manifest.json").is_file():  # TorchScript and ONNX keyed as here: not made again
        shutil.copytree(made, build_dir / "short", ignore=shutil.ignore_patterns("*.so", "backend.json"))
    Builder("short", build_dir, tuning_dir=tmp_path_factory.mktemp("no-tuning")).ensure("llvm")
    return build_dir


def test_auto_runs_onnxruntime_where_the_tvm_build_is_untuned(untuned, caplog):
    """With every database moved away `make model`'s timing finds the untuned TVM build slower, and
    auto loads ONNX Runtime, saying so in one line with both p50s and how to tune."""
    choice = time_detector("short", untuned)
    assert choice["backend"] == "onnxruntime", choice
    with caplog.at_level(logging.INFO, logger="facetrack.models.auto"):
        detector = load_detector("short", backend="auto", model_dir=untuned)
    assert detector.backend == "onnxruntime"
    (line,) = [r.getMessage() for r in caplog.records if "backend auto" in r.getMessage()]
    assert "onnxruntime" in line and f"{choice['tvm_p50_ms']:.2f} ms" in line and HOW_TO_TUNE in line


def test_auto_without_a_timing_or_after_a_rebuild_runs_onnxruntime(untuned, tmp_path):
    model_dir = tmp_path / "short"
    shutil.copytree(untuned / "short", model_dir)
    (model_dir / "backend.json").unlink(missing_ok=True)
    assert choose(model_dir) == ("onnxruntime", "the TVM build was never timed on this host (`make model` times it)")

    write_manifest(model_dir / "backend.json", {"backend": "tvm", "tvm_p50_ms": 1.0, "onnxruntime_p50_ms": 2.0,
                                                "llvm_key": "the key of a library built before"})
    backend, why = choose(model_dir)
    assert backend == "onnxruntime" and "changed since it was timed" in why


def _as_if_built_for(model_dir: Path, target: dict) -> None:
    """The manifest as another machine's build writes it: the library's target is `target`."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["llvm"]["target"] = target
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_library_built_for_another_cpu_is_refused_in_one_line(untuned, tmp_path):
    """#28.8: AVX-512/AMX code on a CPU without them, or aarch64 code here, gives a one-line
    error naming the build's CPU and what this one lacks, instead of SIGILL."""
    model_dir = tmp_path / "short"
    shutil.copytree(untuned / "short", model_dir)
    absent = next(f for f in ("amx_tile", "avx512_fp16", "avx512f", "sve", "asimddp") if f not in HOST_FLAGS)
    _as_if_built_for(model_dir, {"mcpu": "future-cpu", "arch": "x86_64", "needs": ["sse4_2", absent]})
    with pytest.raises(ModelFileError) as err:
        load_detector("short", backend="tvm", model_dir=tmp_path)
    assert "future-cpu" in str(err.value) and absent in str(err.value) and "sse4_2" not in str(err.value)
    assert "\n" not in str(err.value)

    _as_if_built_for(model_dir, {"mcpu": "cortex-a76", "arch": "aarch64", "needs": ["asimd"]})
    with pytest.raises(ModelFileError, match="an aarch64 CPU"):
        load_detector("short", backend="tvm", model_dir=tmp_path)
    backend, why = choose(model_dir)  # auto falls back, saying why
    assert backend == "onnxruntime"


def test_the_manifest_records_the_host_target(untuned):
    entry = json.loads((untuned / "short" / "manifest.json").read_text())["llvm"]
    assert entry["file"] == "llvm.so"
    assert set(entry["target"]["needs"]) <= HOST_FLAGS and "avx2" in entry["target"]["needs"]


def test_a_torn_manifest_is_rebuilt_from_not_fatal(tmp_path, caplog):
    """#28.8: a manifest cut mid-write (the old plain write_text) no longer breaks every later build."""
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "manifest.json").write_text('{"onnx": {"key": "ab')
    with caplog.at_level(logging.WARNING, logger="facetrack.models.build"):
        builder = Builder("short", tmp_path)
    assert builder.manifest == {}
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_the_manifest_is_replaced_in_one_step(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"old": 1}')
    inode = path.stat().st_ino
    write_manifest(path, {"new": {"key": "k"}})
    assert read_manifest(path) == {"new": {"key": "k"}}
    assert path.stat().st_ino != inode  # a new file renamed over the old, never the old one rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_cpuinfo_of_another_architecture_refuses_nothing(tmp_path):
    """Under qemu-user (make check-pi) the emulated userland reads the host's /proc/cpuinfo: x86
    flags under an aarch64 userland say nothing of the emulated CPU, so they must not refuse the
    library (they did: 'this CPU lacks asimd'). A cpuinfo of this machine's own kind still judges."""
    import platform

    from models.cpu import lacks

    record = {"mcpu": "future-cpu", "arch": platform.machine(), "needs": ["sse4_2", "no_such_flag"]}
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm asimddp sse4_2\n"
    x86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse4_2 avx2\n"
    on_arm = platform.machine() == "aarch64"
    foreign, own = tmp_path / "foreign", tmp_path / "own"
    foreign.write_text(x86 if on_arm else arm)
    own.write_text(arm if on_arm else x86)
    assert lacks(record, foreign) == []
    assert lacks(record, own) == ["no_such_flag"]
