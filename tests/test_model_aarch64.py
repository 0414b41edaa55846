"""The Pi 5 path: the aarch64 library on an aarch64 TVM runtime (qemu-user), equal to x86.

Slow (a minute, ~170 MB downloaded on the first run): `make test-slow` or `make check-aarch64`.
"""
from __future__ import annotations

import pytest

from models.qemu_check import check  # without qemu/debootstrap: one error naming `make check-aarch64`

pytestmark = pytest.mark.slow


def test_aarch64_build_under_emulation_equals_the_host_build():
    result = check(n_frames=3)
    assert result["frames"] == 3
    assert result["max_logit"] > 0  # a face was found, so the outputs compared are not all background
    assert result["max_abs_diff_regressors"] < 1e-3 and result["max_abs_diff_logits"] < 1e-3
