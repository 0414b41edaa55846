"""`facetrack build-model`: BlazeFace -> TorchScript -> ONNX -> TVM libraries, cached.

Artefacts go to models/build/<variant>/ (see `artefact_path`). Each is rebuilt only when
the hash of its inputs changes: weights sha256, the model/build code, library versions,
the TVM target and the tuning database (models/tuning/<variant>/) when one applies.
The default (what the service needs) is the tuned host `llvm` library of the configured
variant; cross builds (aarch64 for the Pi 5, opencl, cuda) are made on request.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("facetrack.models.build")

MODELS_DIR = Path(__file__).resolve().parent
BUILD_DIR = MODELS_DIR / "build"
TUNING_DIR = MODELS_DIR / "tuning"
VARIANTS = ("short", "full")
# llvm: this machine (what the detector service loads); llvm-untuned: the same without the
# tuning database, for benchmarks; aarch64: Raspberry Pi 5 (Cortex-A76) cross build.
TVM_TARGETS = ("llvm", "llvm-untuned", "aarch64", "opencl", "cuda")
ALL_ARTEFACTS = ("torchscript", "onnx") + TVM_TARGETS
FILENAMES = {"torchscript": "model.ts", "onnx": "model.onnx", "llvm": "llvm.so",
             "llvm-untuned": "llvm-untuned.so", "aarch64": "aarch64.so", "opencl": "opencl.so",
             "cuda": "cuda.so"}
ONNX_OPSET = 18  # >= 17; torch 2.13 exports 18 natively (down-converting Pad to 17 fails)
CUDA_ARCH = "sm_90"  # the lent H100/H200 machines; change for another GPU
AARCH64_CC = "aarch64-linux-gnu-gcc"
_CODE = [MODELS_DIR / "build.py", MODELS_DIR / "blazeface" / "net.py", MODELS_DIR / "blazeface" / "tflite.py"]


def artefact_path(variant: str, artefact: str, build_dir: Path = BUILD_DIR) -> Path:
    return build_dir / variant / FILENAMES[artefact]


def host_target(mcpu: str | None = None, num_cores: int | None = None):
    """This machine's CPU (or `mcpu`), named so LLVM uses its vector units (AVX2, NEON...)."""
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu or tvm.target.codegen.llvm_get_system_cpu(),
                              "num-cores": num_cores or os.cpu_count() or 1})


def tvm_target(name: str):
    from tvm.target import Target

    if name in ("llvm", "llvm-untuned"):
        return host_target()
    if name == "aarch64":
        return Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "num-cores": 4})
    if name == "opencl":
        return Target("opencl", host="llvm")
    if name == "cuda":
        return Target({"kind": "cuda", "arch": CUDA_ARCH}, host="llvm")
    raise ValueError(f"unknown TVM target {name!r}; choose from {', '.join(TVM_TARGETS)}")


def tuning_db_files(variant: str, tuning_dir: Path = TUNING_DIR) -> list[Path]:
    files = [tuning_dir / variant / "database_workload.json", tuning_dir / variant / "database_tuning_record.json"]
    return files if all(f.is_file() and f.stat().st_size > 0 for f in files) else []


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()


def relax_module(onnx_path: Path, variant: str):
    """ONNX -> Relax IRModule with the weights bound as constants."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    from .blazeface import INPUT_SIZE

    size = INPUT_SIZE[variant]
    return from_onnx(onnx.load(str(onnx_path)), shape_dict={"input": [1, 3, size, size]})


def fuse_for_cpu(mod, target, database=None):
    """Legalize and fuse the Relax module for CPU, then apply the tuning database if given.

    tune.py extracts its tasks from this same module, so the workloads match the database.
    Pads are kept out of fusion: a conv whose epilogue also reads a fused (channel) pad
    makes MetaSchedule's design-space generation fail (reverse-compute-at), and those are
    the blocks' main convolutions. Materialising the pad costs one small copy.
    """
    import tvm
    from tvm import relax

    with target, (database or contextlib.nullcontext()):  # the passes read the current target
        passes = [
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            tvm.transform.module_pass(_pads_opaque, opt_level=0, name="PadsOpaque"),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
        if database is not None:
            passes.append(relax.transform.MetaScheduleApplyDatabase())
        return tvm.transform.Sequential(passes)(mod)


def _pads_opaque(mod, _ctx):
    import tvm

    for gv, func in list(mod.functions.items()):
        if isinstance(func, tvm.tirx.PrimFunc) and gv.name_hint.rstrip("0123456789") == "pad":
            mod[gv] = func.with_attr("op_pattern", 8)  # kOpaque: FuseOps leaves it alone
    return mod


class Builder:
    """Makes the artefacts of one variant, skipping those whose input hash is unchanged."""

    def __init__(self, variant: str, build_dir: Path = BUILD_DIR, tuning_dir: Path = TUNING_DIR,
                 force: bool = False):
        from .weights import sha256, tflite_path

        self.variant, self.force, self.tuning_dir = variant, force, tuning_dir
        self.dir = build_dir / variant
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest = json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file() else {}
        self.tflite = tflite_path(variant)
        self.code = _digest(*(p.read_bytes() for p in _CODE))
        self.weights_sha = sha256(self.tflite)

    def path(self, artefact: str) -> Path:
        return self.dir / FILENAMES[artefact]

    def key(self, artefact: str) -> str:
        import torch

        base = _digest(self.variant, self.weights_sha, self.code, torch.__version__, str(ONNX_OPSET))
        if artefact in ("torchscript", "onnx"):
            return _digest(base, artefact)
        import tvm

        parts = [base, artefact, tvm.__version__, json.dumps(tvm_target(artefact).export(), sort_keys=True,
                                                              default=str)]
        if artefact != "llvm-untuned" and artefact not in ("opencl", "cuda"):
            parts += [f.read_bytes() for f in tuning_db_files(self.variant, self.tuning_dir)]
        return _digest(*parts)

    def ensure(self, artefact: str, dependency: bool = False) -> Path:
        """Build `artefact` unless an up-to-date copy exists; return its path."""
        path, key = self.path(artefact), self.key(artefact)
        if not self.force and path.is_file() and self.manifest.get(artefact, {}).get("key") == key:
            (log.debug if dependency else log.info)("%s/%s: up to date (%s)", self.variant, artefact, path)
            return path
        if artefact in TVM_TARGETS:
            self.ensure("onnx", dependency=True)
        elif artefact == "onnx":
            self.ensure("torchscript", dependency=True)
        t0 = time.perf_counter()
        make = self._tvm if artefact in TVM_TARGETS else getattr(self, "_" + artefact)
        make(artefact, path)
        seconds = time.perf_counter() - t0
        self.manifest[artefact] = {"key": key, "seconds": round(seconds, 2), "bytes": path.stat().st_size}
        self.manifest_path.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        log.info("%s/%s: built %s in %.1f s", self.variant, artefact, path, seconds)
        return path

    def _torch_model(self):
        from .blazeface import from_tflite

        return from_tflite(self.variant, self.tflite)

    def _torchscript(self, artefact: str, path: Path) -> None:
        import torch

        from .blazeface import INPUT_SIZE

        size = INPUT_SIZE[self.variant]
        traced = torch.jit.trace(self._torch_model(), torch.zeros(1, 3, size, size))
        _atomic(path, lambda tmp: torch.jit.save(traced, str(tmp)))

    def _onnx(self, artefact: str, path: Path) -> None:
        import torch

        from .blazeface import INPUT_SIZE

        size = INPUT_SIZE[self.variant]
        with _quiet_stdout():  # the exporter prints progress lines on stdout
            program = torch.onnx.export(self._torch_model(), (torch.zeros(1, 3, size, size),), dynamo=True,
                                        opset_version=ONNX_OPSET, external_data=False, input_names=["input"],
                                        output_names=["regressors", "classificators"])
        _atomic(path, lambda tmp: program.save(str(tmp), external_data=False))

    def _tvm(self, artefact: str, path: Path) -> None:
        import tvm
        from tvm.s_tir import meta_schedule as ms

        target = tvm_target(artefact)
        mod = relax_module(self.path("onnx"), self.variant)
        db_files = tuning_db_files(self.variant, self.tuning_dir)
        if artefact in ("opencl", "cuda"):
            # GPU targets: tvm.compile's default GPU pipeline schedules kernels with DLight.
            ex = _compile_gpu(mod, target, artefact)
        else:
            database = None
            if db_files and artefact != "llvm-untuned":
                database = ms.database.JSONDatabase(*map(str, db_files), allow_missing=False)
                log.info("%s/%s: applying tuning database %s", self.variant, artefact, db_files[0].parent)
            ex = tvm.compile(fuse_for_cpu(mod, target, database), target=target)
        fcompile = None
        if artefact == "aarch64":
            fcompile = tvm.support.cc.cross_compiler(AARCH64_CC)
        _atomic(path, lambda tmp: ex.export_library(str(tmp), fcompile=fcompile))
        if artefact == "aarch64":
            check_elf(path, machine=EM_AARCH64)
        if artefact in ("opencl", "cuda"):
            # The kernel source beside the library, to read or to build a runtime from by hand.
            fmt, suffix = {"opencl": ("cl", ".cl"), "cuda": ("cuda", ".cu")}[artefact]
            kernels = [m for m in _walk_imports(ex.mod) if m.kind == artefact]
            source = "\n".join(m.inspect_source(fmt) for m in kernels)
            if not source:
                raise RuntimeError(f"{artefact} build holds no {artefact} kernel source")
            path.with_suffix(suffix).write_text(source)


def _walk_imports(module):
    """The module and everything it imports (device kernels sit under the host module)."""
    yield module
    for m in module.imports:
        yield from _walk_imports(m)


def _compile_gpu(mod, target, artefact: str):
    import tvm

    if artefact == "cuda":
        os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")  # nvrtc needs cuda-bindings
    return tvm.compile(mod, target=target)


EM_AARCH64 = 183


def check_elf(path: Path, machine: int) -> None:
    """Raise unless `path` is a 64-bit little-endian ELF shared object for `machine`."""
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise RuntimeError(f"{path} is not a 64-bit little-endian ELF file")
    e_type, e_machine = int.from_bytes(head[16:18], "little"), int.from_bytes(head[18:20], "little")
    if e_type != 3 or e_machine != machine:
        raise RuntimeError(f"{path}: ELF type {e_type} machine {e_machine}, expected shared object for {machine}")


def _atomic(path: Path, write) -> None:
    """Write via a temporary name, so a killed build never leaves a half file under the real name."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    write(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet_stdout():
    """Send the library's stdout chatter to the log (stderr): stdout may carry JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def build(variants: list[str], artefacts: list[str], force: bool = False, build_dir: Path = BUILD_DIR,
          tuning_dir: Path = TUNING_DIR) -> dict[tuple[str, str], Path]:
    out = {}
    for variant in variants:
        builder = Builder(variant, build_dir, tuning_dir, force)
        for artefact in artefacts:
            out[variant, artefact] = builder.ensure(artefact)
    return out


def parse_targets(parser: argparse.ArgumentParser, text: str, known: tuple[str, ...]) -> list[str]:
    """`--targets a,b` as a list; an unknown name stops the command with one line."""
    targets = [t for t in text.split(",") if t]
    unknown = set(targets) - set(known)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    return targets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack build-model", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="full")
    p.add_argument("--targets", default="llvm",
                   help=f"comma list of {','.join(TVM_TARGETS)} (TorchScript and ONNX are always made)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    targets = parse_targets(p, args.targets, TVM_TARGETS)
    for name in ("onnx_ir", "onnxscript"):  # one line per pass otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    t0 = time.perf_counter()
    from .weights import fetch

    fetch()  # set-up: a no-op when the verified .tflite files are there
    build(variants, ["torchscript", "onnx", *targets], args.force, args.build_dir)
    log.info("done in %.1f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
