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


def cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict:
    """Model name and the ISA flags above, from the first processor entry of /proc/cpuinfo."""
    name, flags = platform.processor() or platform.machine(), set[str]()
    try:
        text = path.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and name in (platform.processor(), platform.machine()):
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model_name": name, "machine": platform.machine(),
            "isa": [f for f in ISA_FLAGS if f in flags]}


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
