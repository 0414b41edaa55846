"""Run the Pi 5 (aarch64) build under emulation and compare it with the host build.

    python -m models.qemu_check [--frames N] [--variant V]   # make check-aarch64 installs qemu and debootstrap

No Pi here, so the aarch64 library runs on an aarch64 TVM runtime under qemu-user: an arm64
Debian bookworm userland from `debootstrap --foreign` (its packages unpacked, nothing run
inside it), the aarch64 `apache-tvm` wheel and its needs from PyPI (pinned, as on a Pi), and
`qemu-aarch64-static -L <userland>` running that userland's python3. Everything is cached
under models/build/arm64/; the first run downloads ~170 MB. Prints one JSON object: the max
abs difference of every raw output on real frames against the host llvm build, and the
faces the aarch64 outputs decode to.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .build import BUILD_DIR, Builder
from .dataset import DATA_DIR
from .zoo import MODELS

log = logging.getLogger("facetrack.models.qemu_check")

ARM_DIR = BUILD_DIR / "arm64"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"  # bookworm's python3 is 3.11
PACKAGES = ("python3-minimal", "libpython3.11-stdlib", "libstdc++6")
WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post0", "numpy==2.2.6", "ml_dtypes==0.6.0",
          "typing_extensions==4.16.0")
QEMU = "qemu-aarch64-static"
_RUNNER = """
import sys, numpy as np, platform, tvm
from tvm.runtime.vm import VirtualMachine
lib, inputs, out = sys.argv[1:4]
assert platform.machine() == "aarch64", platform.machine()
vm = VirtualMachine(tvm.runtime.load_module(lib), tvm.cpu())
xs = np.load(inputs)
outs = [vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x[None]))) for x in xs]
res = [[o.numpy()] if isinstance(o, tvm.runtime.Tensor) else [t.numpy() for t in o] for o in outs]
np.savez(out, *[np.stack([r[i] for r in res]) for i in range(len(res[0]))])
"""


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what} failed ({proc.returncode}): {tail[0]}")


def userland() -> Path:
    """An arm64 Debian root with python3 (cached); only unpacked, never booted or chrooted."""
    root = ARM_DIR / "root"
    if (root / "usr/bin/python3.11").is_file():
        return root
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: run `make check-aarch64` (apt installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="root-", dir=ARM_DIR))
    log.info("debootstrap: arm64 %s userland (first run only)", SUITE)
    _run(["debootstrap", "--arch=arm64", "--variant=minbase", "--foreign", f"--include={','.join(PACKAGES)}",
          SUITE, str(tmp), MIRROR], "debootstrap")
    for deb in sorted((tmp / "var/cache/apt/archives").glob("*.deb")):  # the second stage would need to boot
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def site_packages() -> Path:
    """The aarch64 wheels, unpacked (cached)."""
    site = ARM_DIR / "site"
    if (site / "tvm").is_dir():
        return site
    wheels = ARM_DIR / "wheels"
    log.info("pip download: %s (aarch64, cp311)", ", ".join(WHEELS))
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
          "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_aarch64", "--platform",
          "manylinux_2_27_aarch64", "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64",
          "-d", str(wheels), *WHEELS], "pip download")
    tmp = Path(tempfile.mkdtemp(prefix="site-", dir=ARM_DIR))
    for wheel in sorted(wheels.glob("*.whl")):
        shutil.unpack_archive(wheel, tmp, "zip")
    shutil.rmtree(site, ignore_errors=True)
    tmp.rename(site)
    return site


def frames(n: int, variant: str = "full") -> np.ndarray:
    """`n` real face frames, preprocessed for `variant`: (n, H, W, 3)."""
    from .images import read_image

    paths = sorted(DATA_DIR.glob("OTB-*/img1/*.jpg"))
    chosen = paths[:: max(1, len(paths) // n)][:n]
    return np.concatenate([MODELS[variant].preprocess(read_image(p))[0] for p in chosen])


def check(n_frames: int = 3, variant: str = "full") -> dict:
    import tvm
    from tvm.runtime.vm import VirtualMachine

    if shutil.which(QEMU) is None:
        raise RuntimeError(f"{QEMU} is missing: run `make check-aarch64` (apt installs qemu-user-static)")
    ARM_DIR.mkdir(parents=True, exist_ok=True)
    builder = Builder(variant)
    arm_lib, host_lib = builder.ensure("aarch64"), builder.ensure("llvm")
    root, site = userland(), site_packages()
    xs = frames(n_frames, variant)
    with tempfile.TemporaryDirectory(dir=ARM_DIR) as tmp_name:
        tmp = Path(tmp_name)
        np.save(tmp / "x.npy", xs)
        (tmp / "runner.py").write_text(_RUNNER)
        log.info("running %s on %d frames under %s (a minute or so)", arm_lib.name, len(xs), QEMU)
        proc = subprocess.run([QEMU, "-L", str(root), str(root / "usr/bin/python3.11"), str(tmp / "runner.py"),
                               str(arm_lib), str(tmp / "x.npy"), str(tmp / "out.npz")],
                              env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"aarch64 run failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        with np.load(tmp / "out.npz") as npz:
            arm = [npz[f"arr_{i}"] for i in range(len(npz.files))]
        vm = VirtualMachine(tvm.runtime.load_module(str(host_lib)), tvm.cpu())
        host_out = [vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x[None]))) for x in xs]
        host = [[o.numpy()] if isinstance(o, tvm.runtime.Tensor) else [t.numpy() for t in o] for o in host_out]
    model = builder.model
    faces = sum(len(model.detections([a[i:i + 1] for a in arm], 0.5, 0.3)[1]) for i in range(len(xs)))
    return {"library": str(arm_lib), "runtime": f"apache-tvm {WHEELS[0].split('==')[1]} aarch64 under {QEMU}",
            "variant": variant, "frames": len(xs), "faces": faces,
            "max_abs_diff": {name: float(np.abs(a[:, 0] - np.stack([h[i][0] for h in host])).max())
                             for i, (name, a) in enumerate(zip(model.outputs, arm))}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.qemu_check", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--variant", choices=list(MODELS), default="full")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    print(json.dumps(check(args.frames, args.variant)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
