"""A committed MetaSchedule database that only ever grows better: folding records in, atomically.

The database of a model and target CPU, models/tuning/<variant>/<target>/, is two JSON-lines
files (MetaSchedule's JSONDatabase): database_workload.json (one workload per line) and
database_tuning_record.json (one record per line, naming its workload by line number), plus
trials.json (measured candidates per workload and the CPUs that measured them, kept by
models/tune.py) and a README.md written from it.

Every write goes through `fold`: each workload keeps its record unless a faster valid one comes
in, so a run that tuned three tasks, or was killed, or tuned another shard never drops the
schedule of a workload it did not improve. Times compare only when taken on the same CPU:
records from another machine come in through `facetrack tune-model --merge`, which times
contested schedules here first. The two files are replaced one after the other, so the
workload file only ever grows at its end (old workloads keep their line numbers): a kill
between the two replaces leaves new workloads beside old records, which is still a valid
database. A lock file serialises writers (two runs on one database lose nothing).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"
INVALID_RUN_SECS = 1e9  # MetaSchedule records failed trials with run_secs of 1e10


def _mean_of(record) -> float:
    return sum(float(s) for s in record.run_secs) / len(record.run_secs)


def run_secs_of(record_json: list) -> list[float]:
    return [float(s) for s in record_json[1] or []]


def is_valid(record_json: list) -> bool:
    secs = run_secs_of(record_json)
    return bool(secs) and all(s < INVALID_RUN_SECS for s in secs)


def mean_secs(record_json: list) -> float:
    secs = run_secs_of(record_json)
    return sum(secs) / len(secs)


@dataclass
class Database:
    """The workloads (in file order) and the best valid record of each, as JSON values."""
    workloads: dict[str, list] = field(default_factory=dict)  # structural hash -> [hash, base64 IR]
    records: dict[str, list] = field(default_factory=dict)    # structural hash -> [trace, run_secs, target, args]

    all_records: list[tuple[str, list]] = field(default_factory=list)  # every line, when read with keep_all

    @classmethod
    def read(cls, db_dir: Path, keep_all: bool = False) -> Database:
        db = cls()
        wl_path, rec_path = db_dir / WORKLOADS, db_dir / RECORDS
        if not wl_path.is_file():
            return db
        keys = []
        for line in wl_path.read_text().splitlines():
            if line.strip():
                workload = json.loads(line)
                keys.append(str(workload[0]))
                db.workloads.setdefault(keys[-1], workload)
        if rec_path.is_file():
            for line in rec_path.read_text().splitlines():
                if line.strip():
                    index, record = json.loads(line)
                    db.offer(keys[index], record)
                    if keep_all:
                        db.all_records.append((keys[index], record))
        return db

    def offer(self, key: str, record: list, workload: list | None = None) -> bool:
        """Keep `record` for workload `key` if it is valid and faster than the one kept; True if kept."""
        if workload is not None:
            self.workloads.setdefault(key, workload)
        if key not in self.workloads or not is_valid(record):
            return False
        if key in self.records and mean_secs(self.records[key]) <= mean_secs(record):
            return False
        self.records[key] = record
        return True

    def write(self, db_dir: Path) -> None:
        """Replace the files atomically, workloads first (see the module docstring)."""
        db_dir.mkdir(parents=True, exist_ok=True)
        index = {key: i for i, key in enumerate(self.workloads)}
        wl_text = "".join(json.dumps(w) + "\n" for w in self.workloads.values())
        rec_text = "".join(json.dumps([index[k], r]) + "\n" for k, r in self.records.items())
        write_atomic(db_dir / WORKLOADS, wl_text)
        write_atomic(db_dir / RECORDS, rec_text)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary name in the same folder, fsync, rename: all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(db_dir: Path):
    """Hold the database's writer lock (a plain file beside it, never committed)."""
    db_dir.mkdir(parents=True, exist_ok=True)
    with open(db_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def records_json(records: list) -> list[tuple[str, list, list]]:
    """(structural hash, workload JSON, record JSON) of each MetaSchedule TuningRecord.

    Serialised by a JSONDatabase (TVM's C++ writer: traces may hold IndexMaps, which the
    Python-side as_json cannot convert) in a scratch folder, then read back.
    """
    import tempfile

    from .graph import open_database

    with tempfile.TemporaryDirectory(prefix="records-") as tmp:
        scratch = open_database(tmp, allow_missing=True)
        for r in records:
            scratch.commit_tuning_record(type(r)(r.trace, scratch.commit_workload(r.workload.mod), r.run_secs,
                                                 r.target, r.args_info))
        db = Database.read(Path(tmp), keep_all=True)
    return [(key, db.workloads[key], rec) for key, rec in db.all_records]


def fold(db_dir: Path, records: list) -> list[str]:
    """Fold MetaSchedule TuningRecords into the database at `db_dir`; the keys whose record improved.

    The caller holds `locked(db_dir)` (flock is per open file: taking it here again would wait
    on itself)."""
    import tvm_ffi

    db = Database.read(db_dir)
    best: dict[str, object] = {}  # only the fastest valid new record of a workload can replace one
    for r in records:
        secs = [float(s) for s in r.run_secs or []]
        if not secs or max(secs) >= INVALID_RUN_SECS:
            continue
        key = str(tvm_ffi.structural_hash(r.workload.mod))
        if key not in best or sum(secs) / len(secs) < _mean_of(best[key]):
            best[key] = r
    improved = []
    for key, workload, rec in records_json(list(best.values())):
        if db.offer(key, rec, workload):
            improved.append(key)
    if improved:
        db.write(db_dir)
    return sorted(set(improved))


LEDGER = "trials.json"


@dataclass
class Ledger:
    """trials.json: measured candidates per workload (valid and failed), its task's name and
    cost, and every CPU that measured them: what the tuning budget is counted in."""
    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def read(cls, db_dir: Path) -> Ledger:
        path = db_dir / LEDGER
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.setdefault("workloads", {})
        data.setdefault("timed_on", [])
        return cls(path, data)

    def measured(self, key: str) -> int:
        return int(self.data["workloads"].get(key, {}).get("measured", 0))

    def entry(self, key: str) -> dict:
        return self.data["workloads"].setdefault(key, {"measured": 0, "failed": 0})

    def write(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")
