"""Which CPU this is: for the bench's report and for picking the tuning database.

A timing means nothing without the CPU it came from, and a MetaSchedule database is only
good for the instruction set it was tuned on (an AVX2 schedule on an AVX-512 machine runs,
but is not the best; an x86 one must never reach the aarch64 build). `tuning_target` names
the database folder for a CPU: x86-avx512, x86-avx2, pi5-cortex-a76, ...
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flags worth stating next to a timing (x86 names, then aarch64 ones).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "asimd", "asimddp", "fphp", "i8mm", "sve")
# Database folder per LLVM CPU of the boards we cross-build for (the x86 ones go by ISA).
ARM_TARGETS = {"cortex-a76": "pi5-cortex-a76", "cortex-a72": "pi4-cortex-a72"}


# LLVM feature -> /proc/cpuinfo flag, for the instruction-set extensions a compiled kernel may use.
# What the kernel actually runs on is what cpuid says (/proc/cpuinfo), not the CPU's model name:
# a VM may hide AVX-512 from a Zen 4 guest.
LLVM_TO_CPUINFO = {
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "ssse3": "ssse3", "avx": "avx", "avx2": "avx2", "fma": "fma",
    "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512cd": "avx512cd", "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16", "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512fp16": "avx512_fp16", "avxvnni": "avx_vnni", "amx-tile": "amx_tile", "amx-int8": "amx_int8",
    "amx-bf16": "amx_bf16", "gfni": "gfni", "vaes": "vaes", "vpclmulqdq": "vpclmulqdq",
    "neon": "asimd", "dotprod": "asimddp", "fullfp16": "asimdhp", "i8mm": "i8mm", "sve": "sve", "bf16": "bf16"}


def cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict:
    """Model name and the ISA flags above, from the first processor entry of /proc/cpuinfo."""
    name, flags = _read(path)
    return {"model_name": name, "machine": platform.machine(),
            "isa": [f for f in ISA_FLAGS if f in (flags or ())]}


# The /proc/cpuinfo key that lists the ISA flags on each architecture.
_FLAGS_KEY = {"x86_64": "flags", "i686": "flags", "aarch64": "features", "armv7l": "features"}


def _read(path: Path) -> tuple[str, set[str] | None]:
    """(model name, all flags) of the first processor entry of /proc/cpuinfo. Flags are None
    when the file does not describe this machine's architecture: an emulated userland
    (qemu-user) sees the host's /proc, x86 flags under an aarch64 userland, which say nothing
    of what the emulated CPU runs."""
    name, flags = platform.processor() or platform.machine(), None
    wanted = _FLAGS_KEY.get(platform.machine())
    try:
        text = path.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and name in (platform.processor(), platform.machine()):
            name = value.strip()
        elif key == wanted and flags is None:
            flags = set(value.split())
    return name, flags


def describe() -> dict:
    """cpuinfo() plus LLVM's name for this CPU (what the host build's `mcpu` is)."""
    import tvm

    return {**cpuinfo(), "llvm_mcpu": str(tvm.target.codegen.llvm_get_system_cpu()),
            "logical_cpus": os.cpu_count()}


def tuning_target(target) -> str:
    """Database folder name for a TVM llvm target: by board for ARM, by vector ISA for x86.

    The ISA comes from LLVM's feature set for the target's mcpu, so `--mcpu znver3` on an
    AVX-512 machine still names the AVX2 database.
    """
    from tvm.target import codegen

    mcpu, mtriple = str(target.attrs.get("mcpu", "")), str(target.attrs.get("mtriple", ""))
    mtriple = mtriple or codegen.llvm_get_system_triple()  # a host build names no triple: it is this machine's
    if mtriple.startswith("aarch64") or mcpu in ARM_TARGETS:
        return ARM_TARGETS.get(mcpu, f"aarch64-{mcpu or 'generic'}")
    features = codegen.llvm_get_cpu_features(target)
    if "avx512f" in features:
        return "x86-avx512"
    if "avx2" in features:
        return "x86-avx2"
    return "x86-generic"


def target_record(target) -> dict:
    """What a build manifest keeps of a TVM llvm target: its CPU, architecture and the
    /proc/cpuinfo flags its code may need (so a runtime without LLVM can check them)."""
    from tvm.target import codegen

    mtriple = str(target.attrs.get("mtriple", "")) or str(codegen.llvm_get_system_triple())
    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    return {"mcpu": str(target.attrs.get("mcpu", "")), "arch": mtriple.split("-")[0].replace("arm64", "aarch64"),
            "needs": sorted(LLVM_TO_CPUINFO[f] for f in features if f in LLVM_TO_CPUINFO)}


def lacks(record: dict, cpuinfo_path: Path = Path("/proc/cpuinfo")) -> list[str]:
    """What code for a `target_record` needs that this CPU lacks (cpuinfo names); [] if it runs here."""
    if record.get("arch", platform.machine()) != platform.machine():
        return [f"an {record['arch']} CPU (this one is {platform.machine()})"]
    flags = _read(cpuinfo_path)[1]
    if flags is None:  # this CPU's flags are unknown here: nothing to refuse on
        return []
    return [f for f in record.get("needs", []) if f not in flags]


def runs_here(target, cpuinfo_path: Path = Path("/proc/cpuinfo")) -> list[str]:
    """What code built for `target` (a TVM llvm target) needs that this CPU lacks; [] if it runs here."""
    return lacks(target_record(target), cpuinfo_path)


def library_mismatch(library: Path) -> str | None:
    """Why the compiled model `library` cannot run on this CPU (one line), or None.

    Reads the target its build recorded in the manifest beside it (models/build.py). Running
    AVX-512 code on an AVX2 CPU, or aarch64 code on x86, dies of SIGILL or fails to load with
    a loader message: this says which CPU it was built for and what this one lacks. A library
    without a recorded target (built before targets were recorded) is not checked.
    """
    import json

    try:
        manifest = json.loads((library.parent / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    entry = next((e for e in manifest.values() if isinstance(e, dict) and e.get("file") == library.name), None)
    if not entry or "target" not in entry:
        return None
    missing = lacks(entry["target"])
    if not missing:
        return None
    return (f"model library {library} was built for {entry['target'].get('mcpu') or entry['target']['arch']}, "
            f"and this CPU lacks {', '.join(missing)}: rebuild it on this machine (`make model`)")
