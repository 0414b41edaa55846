"""`facetrack build-model`: BlazeFace -> TorchScript -> ONNX -> TVM libraries, cached.

Artefacts go to models/build/<variant>/ (see `artefact_path`). Each is rebuilt only when
the hash of its inputs changes: weights sha256, the model/build code, library versions,
the TVM target, the graph options (models/graph.py) and the tuning database when one applies.
Databases are kept per target CPU, models/tuning/<variant>/<target>/ (x86-avx512, x86-avx2,
pi5-cortex-a76: models/cpu.py names them): a schedule is only good for the ISA it was tuned
on, and applying a database ignores the target, so each build looks up its own.
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

from .graph import DEFAULT as GRAPH, open_database, prepare
from .zoo import MODELS

log = logging.getLogger("facetrack.models.build")

MODELS_DIR = Path(__file__).resolve().parent
BUILD_DIR = MODELS_DIR / "build"
TUNING_DIR = MODELS_DIR / "tuning"
VARIANTS = tuple(MODELS)  # the detector models (models/zoo.py): BlazeFace full, short, YuNet
# llvm: this machine (what the detector service loads); llvm-untuned: the same without the
# tuning database, for benchmarks; aarch64: Raspberry Pi 5 (Cortex-A76) cross build.
TVM_TARGETS = ("llvm", "llvm-untuned", "aarch64", "opencl", "cuda")
ALL_ARTEFACTS = ("torchscript", "onnx") + TVM_TARGETS
# onnx-opencv: the same network as OpenCV's own runtime loads it (a model with an `opencv_network`: YuNet)
FILENAMES = {"torchscript": "model.ts", "onnx": "model.onnx", "onnx-opencv": "model-opencv.onnx", "llvm": "llvm.so",
             "llvm-untuned": "llvm-untuned.so", "aarch64": "aarch64.so", "opencl": "opencl.so",
             "cuda": "cuda.so"}
ONNX_OPSET = 18  # >= 17; torch 2.13 exports 18 natively (down-converting Pad to 17 fails)
CUDA_ARCH = "sm_90"  # the lent H100/H200 machines; change for another GPU
AARCH64_CC = "aarch64-linux-gnu-gcc"
_CODE = [MODELS_DIR / "build.py", MODELS_DIR / "graph.py", MODELS_DIR / "zoo.py"]
# VM: "compiled" turns the VM's instructions into TIR (no bytecode interpreter between
# kernels); tirx.disable_assert drops each kernel's argument checks (shapes are static).
VM_EXEC_MODE = "compiled"
BUILD_CONFIG = {"tirx.disable_assert": True}
# A host without its own database may use one of these (same ISA family, narrower vectors);
# never an x86 one for ARM or the reverse.
DB_FALLBACK = {"x86-avx512": ["x86-avx2"], "x86-avx2": [], "pi5-cortex-a76": []}


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


def tuning_db_dir(variant: str, target, tuning_dir: Path = TUNING_DIR) -> Path:
    """Where the database for `target` (a TVM llvm target) lives, whether or not it exists."""
    from .cpu import tuning_target

    return tuning_dir / variant / tuning_target(target)


def _has_db(db_dir: Path) -> bool:
    return all((db_dir / n).is_file() and (db_dir / n).stat().st_size > 0
               for n in ("database_workload.json", "database_tuning_record.json"))


def tuning_db_path(variant: str, target, tuning_dir: Path = TUNING_DIR) -> Path | None:
    """The database a build for `target` applies: its own, else a fallback of its ISA family."""
    own = tuning_db_dir(variant, target, tuning_dir)
    for name in [own.name, *DB_FALLBACK.get(own.name, [])]:
        if _has_db(own.parent / name):
            return own.parent / name
    return None


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()


def relax_module(onnx_path: Path, variant: str):
    """ONNX -> Relax IRModule with the weights bound as constants, at the input shape the file was exported with."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(onnx_path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return from_onnx(model, shape_dict={"input": dims})


class Builder:
    """Makes the artefacts of one variant, skipping those whose input hash is unchanged."""

    def __init__(self, variant: str, build_dir: Path = BUILD_DIR, tuning_dir: Path = TUNING_DIR,
                 force: bool = False, input_size: tuple[int, int] | None = None):
        self.variant, self.force, self.tuning_dir = variant, force, tuning_dir
        self.dir = build_dir / variant
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.dir / "manifest.json"
        self.manifest = read_manifest(self.manifest_path)
        self.model = MODELS[variant].at(input_size)  # a resizable model (YuNet) at another size
        self.code = _digest(*(p.read_bytes() for p in [*_CODE, *self.model.code]))
        self.weights_sha = self.model.weights_digest()

    def path(self, artefact: str) -> Path:
        return self.dir / FILENAMES[artefact]

    def key(self, artefact: str) -> str:
        import torch

        base = _digest(self.variant, self.weights_sha, self.code, torch.__version__, str(ONNX_OPSET),
                       str(self.model.input_shape))
        if artefact in ("torchscript", "onnx", "onnx-opencv"):
            return _digest(base, artefact)
        import tvm

        target = tvm_target(artefact)
        parts = [base, artefact, tvm.__version__, json.dumps(target.export(), sort_keys=True, default=str),
                 GRAPH.key(), VM_EXEC_MODE, json.dumps(BUILD_CONFIG, sort_keys=True)]
        db = self.database_dir(artefact)
        if db is not None:
            parts += [str(db.name)] + [(db / n).read_bytes() for n in ("database_workload.json",
                                                                        "database_tuning_record.json")]
        return _digest(*parts)

    def target_for(self, artefact: str):
        return tvm_target(artefact)

    def database_dir(self, artefact: str) -> Path | None:
        """The tuning database this artefact applies (None: untuned, GPU, or none for its CPU)."""
        if artefact in ("llvm-untuned", "opencl", "cuda"):
            return None
        return tuning_db_path(self.variant, tvm_target(artefact), self.tuning_dir)

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
        make = self._tvm if artefact in TVM_TARGETS else getattr(self, "_" + artefact.replace("-", "_"))
        make(artefact, path)
        seconds = time.perf_counter() - t0
        self.manifest[artefact] = {"key": key, "seconds": round(seconds, 2), "bytes": path.stat().st_size,
                                   "file": path.name}
        if artefact in TVM_TARGETS and artefact not in ("opencl", "cuda"):
            from .cpu import target_record

            self.manifest[artefact]["target"] = target_record(tvm_target(artefact))  # checked at load
        write_manifest(self.manifest_path, self.manifest)
        log.info("%s/%s: built %s in %.1f s", self.variant, artefact, path, seconds)
        return path

    def _log_database(self, artefact: str, target, db_dir: Path | None) -> None:
        own = tuning_db_dir(self.variant, target, self.tuning_dir)
        if db_dir is None:
            log.info("%s/%s: no tuning database for %s (%s): untuned schedules", self.variant, artefact,
                     own.name, own)
        elif db_dir != own:
            log.info("%s/%s: no tuning database for %s; using %s instead (%s)", self.variant, artefact,
                     own.name, db_dir.name, db_dir)
        else:
            log.info("%s/%s: applying tuning database %s", self.variant, artefact, db_dir)

    def _torch_model(self):
        return self.model.network()

    def _torchscript(self, artefact: str, path: Path) -> None:
        import torch

        traced = torch.jit.trace(self._torch_model(), torch.zeros(self.model.input_shape))
        _atomic(path, lambda tmp: torch.jit.save(traced, str(tmp)))

    def _onnx(self, artefact: str, path: Path) -> None:
        import torch

        with _quiet_stdout():  # the exporter prints progress lines on stdout
            program = torch.onnx.export(self._torch_model(), (torch.zeros(self.model.input_shape),), dynamo=True,
                                        opset_version=ONNX_OPSET, external_data=False, input_names=["input"],
                                        output_names=list(self.model.outputs))
        _atomic(path, lambda tmp: program.save(str(tmp), external_data=False))

    def _onnx_opencv(self, artefact: str, path: Path) -> None:
        import torch

        network, names = self.model.opencv_network()
        n, h, w, c = self.model.input_shape
        with _quiet_stdout():
            program = torch.onnx.export(network, (torch.zeros((n, c, h, w)),), dynamo=True, opset_version=ONNX_OPSET,
                                        external_data=False, input_names=["input"], output_names=list(names))
        _atomic(path, lambda tmp: program.save(str(tmp), external_data=False))

    def _tvm(self, artefact: str, path: Path) -> None:
        import tvm
        from tvm import relax

        target = tvm_target(artefact)
        mod = relax_module(self.path("onnx"), self.variant)
        if artefact in ("opencl", "cuda"):
            # GPU targets: tvm.compile's default GPU pipeline schedules kernels with DLight.
            ex = _compile_gpu(mod, target, artefact)
        else:
            db_dir = self.database_dir(artefact)
            if artefact != "llvm-untuned":
                self._log_database(artefact, target, db_dir)
            database = open_database(db_dir) if db_dir is not None else None
            mod = prepare(mod, target, GRAPH, database)
            if database is not None:
                done, total = scheduled_kernels(mod)
                if done < total:  # a graph change orphans a database silently otherwise
                    log.warning("%s/%s: only %d of %d kernels scheduled from the database %s: it was tuned for "
                                "another graph or in part; `facetrack tune-model --variant %s` adds the rest",
                                self.variant, artefact, done, total, db_dir, self.variant)
                else:
                    log.info("%s/%s: %d of %d kernels scheduled from the database", self.variant, artefact,
                             done, total)
            with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
                ex = relax.build(mod, target=target, exec_mode=VM_EXEC_MODE)
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


def read_manifest(path: Path) -> dict:
    """A build manifest; an unreadable one (torn by a crash) counts as empty, with one line: its
    artefacts are rebuilt instead of every later build failing."""
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        return manifest
    except (OSError, ValueError) as e:
        log.warning("build manifest %s is unreadable (%s): rebuilding what it described", path, _first_line(e))
        return {}


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace the manifest in one step (a temporary name, then rename): never half written."""
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True)))


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def scheduled_kernels(mod) -> tuple[int, int]:
    """(PrimFuncs a database schedule was applied to, all PrimFuncs but weight prepacks)."""
    import tvm

    named = [(gv.name_hint, f) for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    funcs = [f for name, f in named if not name.endswith("_weight_prepack")]
    return sum(1 for f in funcs if f.attrs is not None and "tirx.is_scheduled" in f.attrs), len(funcs)


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
    """Write via a temporary name, so a killed build never leaves a half file under the real name
    (one per process: a bench and a tune-model started together may both build it)."""
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet_stdout():
    """Send the library's stdout chatter to the log (stderr): stdout may carry JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def build(variants: list[str], artefacts: list[str], force: bool = False, build_dir: Path = BUILD_DIR,
          tuning_dir: Path = TUNING_DIR, input_size: tuple[int, int] | None = None) -> dict[tuple[str, str], Path]:
    out = {}
    for variant in variants:
        builder = Builder(variant, build_dir, tuning_dir, force, input_size)
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


def parse_size(text: str) -> tuple[int, int]:
    """"640x480" -> (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack build-model", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="full")
    p.add_argument("--targets", default="llvm",
                   help=f"comma list of {','.join(TVM_TARGETS)}, onnx-opencv (yunet: the ONNX file OpenCV's "
                        "cv2.FaceDetectorYN loads); TorchScript and ONNX are always made")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    p.add_argument("--input-size", type=parse_size, metavar="WxH",
                   help="input size of a model that takes any (yunet; default: the size in models/zoo.py)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    targets = parse_targets(p, args.targets, (*TVM_TARGETS, "onnx-opencv"))
    if args.input_size and args.variant != "all" and not MODELS[args.variant].resizable:
        p.error(f"--input-size: the {args.variant} model has one size")
    for name in ("onnx_ir", "onnxscript"):  # one line per pass otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    t0 = time.perf_counter()
    from .weights import fetch
    from .yunet.weights import fetch as fetch_yunet

    fetch()  # set-up: a no-op when the verified .tflite files are there
    if "yunet" in variants:
        fetch_yunet()
    build(variants, ["torchscript", "onnx", *targets], args.force, args.build_dir, input_size=args.input_size)
    if "llvm" in targets:
        from .auto import time_detector

        for variant in variants:  # what `backend: auto` runs on this host
            time_detector(variant, args.build_dir, args.input_size)
    log.info("done in %.1f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
