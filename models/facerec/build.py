"""`facetrack build-identity`: the face descriptor net -> TorchScript -> ONNX -> TVM, cached.

Artefacts go to models/build/facerec/ (model.ts, model.onnx, llvm.so, aarch64.so). Like the
detector's build (models/build.py, whose helpers this reuses), each is rebuilt only when the
hash of its inputs changes: the weights' sha256, this package's network and build code,
library versions and the TVM target. The default is what the identity service loads: the
host `llvm` library; `aarch64` is the Raspberry Pi 5 cross build.
The TVM build is untuned (no MetaSchedule database yet): see `facetrack bench identity`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from models.build import (AARCH64_CC, BUILD_DIR, EM_AARCH64, ONNX_OPSET, _atomic, _digest, _quiet_stdout,
                          check_elf, parse_targets, read_manifest, tvm_target, write_manifest)
from models.graph import GraphOptions, prepare

from . import weights
from .spec import INPUT_SIZE

log = logging.getLogger("facetrack.models.facerec.build")

NAME = "facerec"
TVM_TARGETS = ("llvm", "aarch64")
FILENAMES = {"torchscript": "model.ts", "onnx": "model.onnx", "llvm": "llvm.so", "aarch64": "aarch64.so"}
INPUT_SHAPE = (1, 3, INPUT_SIZE, INPUT_SIZE)
_CODE = [Path(__file__).resolve().parent / name for name in ("build.py", "net.py", "spec.py")] + [
    Path(__file__).resolve().parents[1] / "graph.py"]  # the TVM passes it shares with the detector


def artefact_path(artefact: str, build_dir: Path = BUILD_DIR) -> Path:
    return build_dir / NAME / FILENAMES[artefact]


class Builder:
    """Makes the artefacts, skipping those whose input hash is unchanged."""

    def __init__(self, build_dir: Path = BUILD_DIR, weights_dir: Path = weights.WEIGHTS_DIR, force: bool = False):
        self.force = force
        self.manifest_in = weights.manifest_path(weights_dir)  # raises WeightsError when not set up
        self.dir = build_dir / NAME
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record_path = self.dir / "manifest.json"
        self.record = read_manifest(self.record_path)
        self.code = _digest(*(p.read_bytes() for p in _CODE))

    def path(self, artefact: str) -> Path:
        return self.dir / FILENAMES[artefact]

    def key(self, artefact: str) -> str:
        import torch

        base = _digest(NAME, *weights.FILES.values(), self.code, torch.__version__, str(ONNX_OPSET))
        if artefact in ("torchscript", "onnx"):
            return _digest(base, artefact)
        import tvm

        return _digest(base, artefact, tvm.__version__,
                       json.dumps(tvm_target(artefact).export(), sort_keys=True, default=str))

    def ensure(self, artefact: str) -> Path:
        """Build `artefact` unless an up-to-date copy exists; return its path."""
        path, key = self.path(artefact), self.key(artefact)
        if not self.force and path.is_file() and self.record.get(artefact, {}).get("key") == key:
            log.info("%s/%s: up to date (%s)", NAME, artefact, path)
            return path
        if artefact in TVM_TARGETS:
            self.ensure("onnx")
        t0 = time.perf_counter()
        {"torchscript": self._torchscript, "onnx": self._onnx}.get(artefact, self._tvm)(artefact, path)
        seconds = time.perf_counter() - t0
        self.record[artefact] = {"key": key, "seconds": round(seconds, 2), "bytes": path.stat().st_size,
                                 "file": path.name}
        if artefact in TVM_TARGETS:
            from models.cpu import target_record

            self.record[artefact]["target"] = target_record(tvm_target(artefact))  # checked at load
        write_manifest(self.record_path, self.record)
        log.info("%s/%s: built %s in %.1f s", NAME, artefact, path, seconds)
        return path

    def _torch_model(self):
        from .net import from_manifest

        return from_manifest(self.manifest_in)

    def _torchscript(self, artefact: str, path: Path) -> None:
        import torch

        traced = torch.jit.trace(self._torch_model(), torch.zeros(INPUT_SHAPE))
        _atomic(path, lambda tmp: torch.jit.save(traced, str(tmp)))

    def _onnx(self, artefact: str, path: Path) -> None:
        import torch

        with _quiet_stdout():  # the exporter prints progress lines on stdout
            program = torch.onnx.export(self._torch_model(), (torch.zeros(INPUT_SHAPE),), dynamo=True,
                                        opset_version=ONNX_OPSET, external_data=False, input_names=["input"],
                                        output_names=["descriptor"])
        _atomic(path, lambda tmp: program.save(str(tmp), external_data=False))

    def _tvm(self, artefact: str, path: Path) -> None:
        import onnx
        import tvm
        from tvm.relax.frontend.onnx import from_onnx

        target = tvm_target(artefact)
        mod = from_onnx(onnx.load(str(self.path("onnx"))), shape_dict={"input": list(INPUT_SHAPE)})
        ex = tvm.compile(prepare(mod, target, GraphOptions(layout="NCHW", prepack=False)), target=target)
        fcompile = tvm.support.cc.cross_compiler(AARCH64_CC) if artefact == "aarch64" else None
        _atomic(path, lambda tmp: ex.export_library(str(tmp), fcompile=fcompile))
        if artefact == "aarch64":
            check_elf(path, machine=EM_AARCH64)


def build(artefacts: list[str], force: bool = False, build_dir: Path = BUILD_DIR) -> dict[str, Path]:
    builder = Builder(build_dir, force=force)
    return {artefact: builder.ensure(artefact) for artefact in artefacts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack build-identity", description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="llvm",
                   help=f"comma list of {','.join(TVM_TARGETS)} (TorchScript and ONNX are always made)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    targets = parse_targets(p, args.targets, TVM_TARGETS)
    try:
        build(["torchscript", "onnx", *targets], args.force, args.build_dir)
        if "llvm" in targets:
            from models.auto import time_identity

            time_identity(args.build_dir)  # what `backend: auto` runs on this host
    except weights.WeightsError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
