"""The Pi 5 path: the aarch64 library on an aarch64 TVM runtime (qemu-user), equal to x86.

Slow (a minute, ~170 MB downloaded on the first run): `make test-slow` or `make check-aarch64`.
"""
from __future__ import annotations

import pytest

from models.qemu_check import check  # without qemu/debootstrap: one error naming `make check-aarch64`

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("variant, frames", [("full", 3), ("yunet", 1)])  # YuNet: 640x480, slow when emulated
def test_aarch64_build_under_emulation_equals_the_host_build(variant, frames):
    result = check(n_frames=frames, variant=variant)
    assert result["frames"] == frames
    assert result["faces"] >= frames  # faces found, so the outputs compared are not all background
    assert max(result["max_abs_diff"].values()) < 1e-3, result
