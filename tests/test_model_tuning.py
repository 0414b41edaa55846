"""The committed MetaSchedule database, and merging databases tuned on other machines."""
from __future__ import annotations

import argparse

import pytest

from models.build import TUNING_DIR, host_target, tuning_db_path
from models.graph import open_database
from models.tune import _mean, _shard, save_best, verify

HOST_DB = tuning_db_path("full", host_target())
pytestmark = pytest.mark.skipif(HOST_DB is None, reason="no committed tuning database for this CPU")


def test_tuning_database_holds_valid_records():
    stats = verify(HOST_DB)
    assert stats["valid"] >= 10 and stats["valid"] == stats["records"]


def test_every_target_database_is_valid():
    dbs = [d for d in (TUNING_DIR / "full").iterdir() if (d / "database_workload.json").is_file()]
    assert HOST_DB in dbs
    for d in dbs:
        assert verify(d)["valid"] >= 1, d


def _db(path):
    return open_database(path, allow_missing=True)


def test_merge_keeps_the_schedule_that_is_faster_here(tmp_path):
    """A database from elsewhere claims 1 ns for an untuned schedule of a real workload:
    the merge measures both here and keeps the tuned one, with the time taken here."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    committed = _db(HOST_DB).get_all_tuning_records()
    # The heaviest convolution: left unscheduled it is several times slower (a light one
    # is not: the naive and tuned schedules of a 6x6 conv take the same few microseconds).
    tuned = max((r for r in committed if "conv2d" in str(r.workload.mod)), key=_mean)
    base, other = _db(tmp_path / "base"), _db(tmp_path / "other")
    base.commit_tuning_record(ms.database.TuningRecord(
        tuned.trace, base.commit_workload(tuned.workload.mod), tuned.run_secs, tuned.target, tuned.args_info))
    naive = Schedule(tuned.workload.mod).trace  # nothing scheduled: scalar loops
    other.commit_tuning_record(ms.database.TuningRecord(
        naive, other.commit_workload(tuned.workload.mod), [1e-9], tuned.target, tuned.args_info))

    stats = save_best(base, tmp_path / "merged", others=[other])

    assert stats["records"] == 1
    (kept,) = _db(tmp_path / "merged").get_all_tuning_records()
    assert str(kept.trace) == str(tuned.trace)
    assert 1e-9 < _mean(kept) < 1.0  # measured here, not copied from either database


def test_a_run_from_seeds_keeps_its_own_measurements(tmp_path):
    """A run continued from records timed elsewhere: its tuned workload keeps the record the
    run measured, even against a seed claiming 1 ns; a workload it measured nothing for keeps
    its seed; a seed of a workload not tuned is left out."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    committed = _db(HOST_DB).get_all_tuning_records()
    a, b, c = sorted(committed, key=_mean)[-3:]
    seeds, work = _db(tmp_path / "seeds"), _db(tmp_path / "work")
    for db in (seeds, work):  # a run's work database starts as a copy of its seeds
        for r, secs in ((a, [1e-9]), (b, b.run_secs), (c, c.run_secs)):
            db.commit_tuning_record(ms.database.TuningRecord(
                r.trace, db.commit_workload(r.workload.mod), secs, r.target, r.args_info))
    fresh = Schedule(a.workload.mod).trace
    work.commit_tuning_record(ms.database.TuningRecord(
        fresh, work.commit_workload(a.workload.mod), [2e-3], a.target, a.args_info))

    stats = save_best(work, tmp_path / "out", seeds=seeds, tuned=[a.workload.mod, b.workload.mod])

    assert stats["records"] == 2
    kept = {str(r.workload.mod): r for r in _db(tmp_path / "out").get_all_tuning_records()}
    assert str(kept[str(a.workload.mod)].trace) == str(fresh) and _mean(kept[str(a.workload.mod)]) == 2e-3
    assert str(kept[str(b.workload.mod)].trace) == str(b.trace)
    assert str(c.workload.mod) not in kept


def test_shard_is_k_of_n():
    assert _shard("1/4") == (1, 4)
    for bad in ("4/4", "a/2", "1", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _shard(bad)
