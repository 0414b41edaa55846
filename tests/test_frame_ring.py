"""The frame ring across real processes: torn reads are detected, never returned."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest

from common.frame_ring import FrameRing, RingError, RingReader
from common.messages import Frame
from needs import tmpfs, tool

WRITER = """
import sys, time, numpy as np
from common.frame_ring import FrameRing
ring = FrameRing.attach(sys.argv[1], sys.argv[2])
frame = np.empty((240, 320, 3), np.uint8)
i = 0
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    frame.fill(i % 251)
    ring.write(i, time.time(), frame)
    i += 1
print(i)
"""


@pytest.fixture
def ring(tmp_path):
    r = FrameRing.create(f"test-{os.getpid()}", 320, 240, slots=2, shm_dir=tmp_path)
    yield r
    r.close()


def test_round_trip_and_overwrite(ring):
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    slot, seq = ring.write(7, 1.5, image)
    assert ring.peek(slot) == (seq, 7)
    assert np.array_equal(ring.read(slot, seq), image)
    ring.write(9, 2.0, image)  # 9 % 2 == 7 % 2: same slot, newer frame
    assert ring.read(slot, seq) is None


def test_torn_reads_detected_across_processes(ring, tmp_path):
    """A second process writes uniform frames flat out into 2 slots while we read them.

    Every frame `read` returns must be whole (one value throughout); copies taken without
    the seqlock's second check must show tearing, or the test proves nothing.
    """
    writer = subprocess.Popen([sys.executable, "-c", WRITER, ring.path.name, str(tmp_path), "3"],
                              cwd=os.getcwd(), stdout=subprocess.PIPE, text=True)
    whole = discarded = torn_unchecked = 0
    raw = np.frombuffer(ring._mm, np.uint8)  # the test's own unchecked view
    give_up = time.monotonic() + 60  # the writer's start (python + numpy) takes seconds under emulation
    while ring.peek(0)[0] == 0 and writer.poll() is None and time.monotonic() < give_up:
        time.sleep(0.01)
    deadline = time.monotonic() + 2.5
    try:
        while time.monotonic() < deadline:
            for slot in (0, 1):
                seq, _ = ring.peek(slot)
                if seq == 0 or seq % 2:  # never written, or the writer is in it
                    continue
                image = ring.read(slot, seq)
                if image is None:
                    discarded += 1
                else:
                    assert image.min() == image.max(), "a torn frame was returned as whole"
                    whole += 1
                start = 64 + slot * ring.slot_bytes + 64
                copy = raw[start:start + 320 * 240 * 3].copy()
                torn_unchecked += int(copy.min() != copy.max())
    finally:
        del raw
        written = int(writer.communicate(timeout=10)[0])
    assert written > 100
    assert whole > 0
    assert discarded > 0, "the writer never overtook a read: the test did not exercise the seqlock"
    assert torn_unchecked > 0, "no unchecked copy was torn: the race was not exercised"


def test_seqlock_orders_with_arm_barriers():
    """The ring's seqlock as the Pi's compiler builds it: acquire load, release store, both fences.

    Emulation cannot show ARM's reordering (qemu-user runs guest loads and stores in the x86
    host's order), so this checks the instructions that forbid it: without them a Cortex-A76 may
    let a torn frame pass both sequence checks (common/seqlock.c).
    """
    native = platform.machine() == "aarch64" and shutil.which("gcc")  # on the board (or check-pi's userland)
    gcc = native or tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    source = Path(__file__).resolve().parent.parent / "common" / "seqlock.c"
    asm = subprocess.run([gcc, "-O2", "-S", "-o", "-", str(source)], capture_output=True, text=True, check=True).stdout
    bodies = dict(re.findall(r"^(ft_\w+):\n(.*?)\n\s*ret", asm, re.S | re.M))
    assert "ldar" in bodies["ft_seq_begin_read"]  # pixels are loaded after the first check
    assert "dmb\tishld" in bodies["ft_seq_end_read"]  # ... and before the second
    assert "dmb\tish" in bodies["ft_seq_begin_write"]  # the odd number is seen before any pixel
    assert "stlr" in bodies["ft_seq_end_write"]  # every pixel is seen before the even number


def test_reader_follows_restarted_capture(tmp_path):
    name = f"test-restart-{os.getpid()}"
    image = np.full((24, 32, 3), 5, np.uint8)
    first = FrameRing.create(name, 32, 24, 4, shm_dir=tmp_path)
    slot, seq = first.write(0, 0.0, image)
    reader = RingReader(name, tmp_path)
    msg = Frame(stack="t", frame_id=0, slot=slot, seq=seq, ring_id=first.ring_id, t_capture=0.0,
                width=32, height=24, source_pos=0)
    assert reader.read(msg) is not None
    first.close()  # capture died; a new capture makes a new ring of the same name
    second = FrameRing.create(name, 32, 24, 4, shm_dir=tmp_path)
    slot, seq = second.write(0, 0.0, image + 1)
    msg2 = Frame(stack="t", frame_id=0, slot=slot, seq=seq, ring_id=second.ring_id, t_capture=0.0,
                 width=32, height=24, source_pos=0)
    assert reader.read(msg2)[0, 0, 0] == 6
    reader.close()
    second.close()
    assert not (tmp_path / name).exists()


def test_segment_is_private_and_stale_one_replaced(tmp_path):
    name = "test-stale"
    (tmp_path / name).write_bytes(b"left by a crash")
    ring = FrameRing.create(name, 32, 24, 2, shm_dir=tmp_path)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    ring.close()


OWNER = """
import sys
from common.frame_ring import FrameRing
ring = FrameRing.create(sys.argv[1], 32, 24, 2, shm_dir=sys.argv[2])
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_live_owners_ring_is_refused_and_a_dead_owners_replaced(tmp_path):
    """A second capture of the same name must not take over a live ring; once its owner is
    killed (no chance to unlink), the segment is stale and a new capture replaces it."""
    name = f"test-owned-{os.getpid()}"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, name, str(tmp_path)], cwd=os.getcwd(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        reader = FrameRing.attach(name, tmp_path)
        with pytest.raises(RingError, match=f"in use by pid {owner.pid} ") as err:
            FrameRing.create(name, 32, 24, 2, shm_dir=tmp_path)
        assert "\n" not in str(err.value)
        with FrameRing.attach(name, tmp_path) as again:
            assert again.ring_id == reader.ring_id  # the owner's ring is untouched
    finally:
        owner.kill()
        owner.wait(timeout=10)
    assert (tmp_path / name).exists()  # killed: the segment stays behind
    ring = FrameRing.create(name, 32, 24, 2, shm_dir=tmp_path)
    assert ring.ring_id != reader.ring_id
    reader.close()
    ring.close()


def test_attach_errors_are_one_line(tmp_path):
    with pytest.raises(RingError, match="not found"):
        FrameRing.attach("missing", tmp_path)
    (tmp_path / "junk").write_bytes(b"x" * 200)
    with pytest.raises(RingError, match="not a facetrack ring"):
        FrameRing.attach("junk", tmp_path)


def test_too_small_shm_fails_at_create_with_size_needed(tmp_path):
    with tmpfs(tmp_path / "tiny") as mount:
        with pytest.raises(RingError) as err:
            FrameRing.create("big", 640, 480, 16, shm_dir=mount)
        message = str(err.value)
        assert "needs 14.1 MB" in message and "\n" not in message
        assert not (mount / "big").exists()
