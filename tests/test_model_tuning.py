"""The committed MetaSchedule databases, growing them, and merging databases tuned elsewhere."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.build import TUNING_DIR, host_target, tuning_db_path
from models.graph import open_database
from models.tune import Budget, Task, _mean, _shard, merge, next_task, verify
from models.tuning_db import RECORDS, WORKLOADS, Ledger, fold, locked

REPO = Path(__file__).resolve().parents[1]
HOST_DB = tuning_db_path("full", host_target())
needs_db = pytest.mark.skipif(HOST_DB is None, reason="no committed tuning database for this CPU")


@needs_db
def test_tuning_database_holds_valid_records():
    stats = verify(HOST_DB)
    assert stats["valid"] >= 10 and stats["valid"] == stats["records"]


def test_every_target_database_is_valid():
    dbs = [d for d in TUNING_DIR.glob("*/*") if (d / WORKLOADS).is_file()]
    assert dbs
    for d in dbs:
        assert verify(d)["valid"] >= 1, d


def test_every_shipped_database_schedules_every_kernel_of_its_graph():
    """A database belongs to its graph: a graph change silently orphans it (full/x86-avx2 once
    scheduled 0 of 75 kernels). Every folder must cover every task of its model's graph, made
    for the folder's own target."""
    from models.tune import coverage

    for d in TUNING_DIR.glob("*/*"):
        if (d / WORKLOADS).is_file():
            covered, total, missing = coverage(d.parent.name, d)
            assert covered == total, f"{d} schedules {covered} of {total} tasks; missing e.g. {missing[:3]}"


def _db(path):
    return open_database(path, allow_missing=True)


def _record(ms, like, trace=None, secs=None, db=None):
    """A TuningRecord of `like`'s workload with another trace or time (committed to `db` if given)."""
    workload = db.commit_workload(like.workload.mod) if db is not None else like.workload
    record = ms.database.TuningRecord(trace if trace is not None else like.trace, workload,
                                      secs if secs is not None else like.run_secs, like.target, like.args_info)
    if db is not None:
        db.commit_tuning_record(record)
    return record


def _lines(db_dir: Path) -> dict[str, list]:
    """workload hash -> its record line's JSON, read independently of models.tuning_db."""
    keys = [json.loads(line)[0] for line in (db_dir / WORKLOADS).read_text().splitlines()]
    return {keys[i]: rec for i, rec in map(json.loads, (db_dir / RECORDS).read_text().splitlines())}


@needs_db
def test_fold_replaces_only_what_it_improves(tmp_path):
    """#28.6 at the mechanism: folding a slower record changes nothing; a faster one replaces
    its workload's record and leaves every other record as it was, byte for byte."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    db_dir = tmp_path / "db"
    shutil.copytree(HOST_DB, db_dir, ignore=shutil.ignore_patterns("trials.json", "README.md"))
    before = _lines(db_dir)
    target = max(_db(db_dir).get_all_tuning_records(), key=_mean)
    naive = Schedule(target.workload.mod).trace

    with locked(db_dir):
        assert fold(db_dir, [_record(ms, target, naive, [_mean(target) * 2])]) == []
    assert _lines(db_dir) == before

    with locked(db_dir):
        (key,) = fold(db_dir, [_record(ms, target, naive, [_mean(target) / 2])])
    after = _lines(db_dir)
    assert set(after) == set(before) and len(after) == len(before) > 10
    assert {k: r for k, r in after.items() if k != key} == {k: r for k, r in before.items() if k != key}
    assert after[key][1] == [_mean(target) / 2]
    kept = {str(r.workload.mod): r for r in _db(db_dir).get_all_tuning_records()}
    assert str(kept[str(target.workload.mod)].trace) == str(naive)


@needs_db
def test_a_write_cut_between_the_two_files_leaves_a_valid_database(tmp_path):
    """The workload file is replaced first and only grows at its end: a run killed right
    after it leaves the old records beside the new workloads, which still load, each record
    on its own workload."""
    records = sorted(_db(HOST_DB).get_all_tuning_records(), key=_mean)
    old, new = tmp_path / "old", tmp_path / "new"
    with locked(old):
        fold(old, records[:-1])
    shutil.copytree(old, new)
    with locked(new):
        fold(new, records[-1:])
    old_workloads = (old / WORKLOADS).read_text().splitlines()
    assert (new / WORKLOADS).read_text().splitlines()[:len(old_workloads)] == old_workloads

    shutil.copy(new / WORKLOADS, old / WORKLOADS)  # the cut: new workloads, old records

    loaded = {str(r.workload.mod): str(r.trace) for r in _db(old).get_all_tuning_records()}
    assert loaded == {str(r.workload.mod): str(r.trace) for r in records[:-1]}


def _tasks(n: int) -> list[Task]:
    return [Task(rank, f"t{rank}", f"k{rank}", 1 / n, None) for rank in range(n)]


def test_budget_covers_every_task_then_tunes_the_heaviest_under_its_budget(tmp_path):
    tasks, budget = _tasks(4), Budget(heavy_tasks=2, heavy_trials=8, light_trials=2)
    ledger = Ledger.read(tmp_path)
    order = []
    for _ in range(14):
        task = next_task(tasks, ledger, budget, exhausted=set())
        order.append(task.name)
        ledger.entry(task.key)["measured"] = ledger.measured(task.key) + 2
    # every task once, heaviest first (the database covers the graph); then under budget, heaviest
    # first: t0 to 8, t1 to 8 (t2 and t3 met theirs, 2); then the least tuned for its budget
    assert order[:10] == ["t0", "t1", "t2", "t3"] + ["t0"] * 3 + ["t1"] * 3
    assert order[10:14] == ["t0", "t1", "t2", "t3"]  # all met: one round each in turn, heaviest first
    assert next_task(tasks, ledger, budget, exhausted={"k0", "k1", "k2", "k3"}) is None


@needs_db
def test_merge_keeps_the_schedule_that_is_faster_here(tmp_path):
    """A database from elsewhere claims 1 ns for an untuned schedule of a real workload:
    the merge measures both here and keeps the tuned one, with the time taken here."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    committed = _db(HOST_DB).get_all_tuning_records()
    # The heaviest convolution: left unscheduled it is several times slower (a light one
    # is not: the naive and tuned schedules of a 6x6 conv take the same few microseconds).
    tuned = max((r for r in committed if "conv2d" in str(r.workload.mod)), key=_mean)
    other_tuned = min(committed, key=_mean)
    base, other = tmp_path / "base", tmp_path / "other"
    with locked(base):
        fold(base, [tuned])
    _record(ms, tuned, Schedule(tuned.workload.mod).trace, [1e-9], db=_db(other))  # nothing scheduled
    _record(ms, other_tuned, db=_db(other))  # a workload only the other database has

    stats = merge(base, [other])

    assert stats["records"] == 2
    kept = {str(r.workload.mod): r for r in _db(base).get_all_tuning_records()}
    assert str(kept[str(tuned.workload.mod)].trace) == str(tuned.trace)
    assert 1e-9 < _mean(kept[str(tuned.workload.mod)]) < 1.0  # measured here, not copied from either
    assert str(kept[str(other_tuned.workload.mod)].trace) == str(other_tuned.trace)


def test_shard_is_k_of_n():
    assert _shard("1/4") == (1, 4)
    for bad in ("4/4", "a/2", "1", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _shard(bad)


# --- real tuning runs on the small `short` BlazeFace: builder start-up alone is ~26 s here ---

def _naive_database(db_dir: Path) -> dict[str, str]:
    """A database of `short` holding an unscheduled record (claimed 1 s) for every task; hash -> trace."""
    import tvm_ffi
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    from models.build import Builder, relax_module
    from models.graph import DEFAULT, MODULE_EQUALITY, prepare

    target = host_target(num_cores=1)
    mod = prepare(relax_module(Builder("short").ensure("onnx"), "short"), target, DEFAULT)
    db = _db(db_dir)
    traces = {}
    for task in extract_tasks(mod, target, module_equality=MODULE_EQUALITY):
        workload = task.dispatched[0]
        trace = Schedule(workload).trace
        db.commit_tuning_record(ms.database.TuningRecord(trace, db.commit_workload(workload), [1.0], target,
                                                         ms.arg_info.ArgInfo.from_prim_func(workload["main"])))
        traces[str(tvm_ffi.structural_hash(workload))] = str(trace)
    return traces


@pytest.mark.slow  # one tuning round: extraction, ~26 s of builder start, 4 candidates
def test_tuning_a_few_tasks_keeps_every_other_schedule(tmp_path):
    """#28.6: `--tasks 1 --out DB` tunes the heaviest task and keeps every other workload's
    record (the old save_best kept only what the run tuned)."""
    from models import tune

    db_dir = tmp_path / "db"
    naive = _naive_database(db_dir)
    before = _lines(db_dir)

    tune.main(["--variant", "short", "--tasks", "1", "--trials", "4", "--out", str(db_dir)])

    after = _lines(db_dir)
    assert set(after) == set(naive)
    changed = [k for k in after if after[k] != before[k]]
    assert len(changed) == 1 and float(after[changed[0]][1][0]) < 1.0  # the tuned one, measured here


@pytest.mark.slow  # two runs of a round or two each
def test_a_killed_run_keeps_each_finished_round_and_the_next_run_resumes(tmp_path):
    """The database grows round by round: after the first round's progress line the round's
    best record and its count are committed; SIGKILL loses nothing committed; the next run
    goes on with the next task under its budget."""
    db_dir = tmp_path / "db"
    naive = _naive_database(db_dir)
    cmd = [sys.executable, "-m", "models.tune", "--variant", "short", "--out", str(db_dir), "--tasks", "2",
           "--round-trials", "4", "--heavy-tasks", "2", "--heavy-trials", "4", "--light-trials", "4"]
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*cmd, "--minutes", "60"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 2700  # liveness only: on a loaded 2-core box it took over 15 min
        while "round 1:" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no round finished in 45 min"
            time.sleep(1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    lines = _lines(db_dir)
    assert set(lines) == set(naive)
    (first,) = [k for k, r in lines.items() if float(r[1][0]) < 1.0]
    ledger = json.loads((db_dir / "trials.json").read_text())
    assert ledger["workloads"][first]["measured"] >= 1
    assert ledger["workloads"][first]["rank"] == 0
    assert "| 1 |" in (db_dir / "README.md").read_text()

    subprocess.run([*cmd, "--trials", "4"], cwd=REPO, check=True, capture_output=True, timeout=2700)

    ledger = json.loads((db_dir / "trials.json").read_text())
    second = [k for k, e in ledger["workloads"].items() if e.get("rank") == 1]
    assert ledger["workloads"][second[0]]["measured"] >= 1
    lines = _lines(db_dir)
    assert float(lines[first][1][0]) < 1.0 and float(lines[second[0]][1][0]) < 1.0
    assert sum(1 for r in lines.values() if float(r[1][0]) < 1.0) == 2 and set(lines) == set(naive)
