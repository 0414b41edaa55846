"""`facetrack tune-model --isa avx512|avx2 --minutes N`: MetaSchedule tuning as a background job.

The database is kept in models/tuning/<variant>/<target>/ (committed; the target is the ISA of
the CPU tuned for, models/cpu.py; only the best record of each workload is kept, so it stays
small) and applied by every later `build-model` for that target. Candidates come from a
single-thread design space (no parallel loops) of the graph models/graph.py makes.

A run tunes in rounds of one task x `--round-trials` measured candidates, heaviest task first
(FLOPs x uses): first every task not tuned yet (so the database soon covers the whole graph),
then tasks under their budget (`--heavy-trials` for each of the
`--heavy-tasks` heaviest, `--light-trials` for the rest; then the least tuned relative to its
budget). After each round its records are folded into the committed database (a workload's
record is replaced only by a faster one: models/tuning_db.py) and the measured candidates are
counted in trials.json, so a run can be killed at any time and loses at most one round, and
the next run resumes from the database: tuning accumulates from one day to the next. A
progress line per round says where it stands.

Two traps of TVM 0.27 on small machines are handled here:
- MetaSchedule's LocalBuilder starts a fresh process pool for every batch, and each worker
  spends ~26 s importing tvm.s_tir.tensor_intrin: the default 30 s timeout makes every
  trial fail while the run "succeeds". This builder keeps one pool alive for the whole run
  (paying the start once) with a long timeout; the runner and the cost model live as long.
- Without a per-task cap a small budget tunes only the first task: each round is one task.
Candidates are measured on `--threads` threads (default 1, as the detector and the bench run):
a schedule tuned on every core is not the best one on one. `--isa avx2` tunes for an AVX2 CPU
(LLVM `znver3`) on an AVX-512 machine, which runs AVX2 code: the times are this CPU's, not
an AVX2 machine's (the database's README says so). A larger machine of the same instruction
set can tune for this one: `--shard K/N` splits the tasks over N processes, and `--merge`
folds their databases into the committed one, timing contested schedules here.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .build import BUILD_DIR, TUNING_DIR, VARIANTS, Builder, host_target, relax_module, tuning_db_dir
from .graph import DEFAULT as GRAPH, MODULE_EQUALITY, open_database, prepare
from .tuning_db import INVALID_RUN_SECS, Database, Ledger, fold, locked, records_json, write_atomic

log = logging.getLogger("facetrack.models.tune")

# LLVM CPUs that stand for an ISA when the host is of another (an AVX-512 host runs AVX2 code).
ISA_MCPU = {"avx512": "znver4", "avx2": "znver3"}


def _persistent_builder(timeout_sec: float, max_workers: int):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, LocalBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object  # methods of the Python class behind LocalBuilder are what TVM calls
    class PersistentLocalBuilder(LocalBuilder._cls):
        """LocalBuilder whose worker pool outlives a batch (see the module docstring)."""

        def build(self, build_inputs):
            if getattr(self, "pool", None) is None:
                self.pool = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec,
                                              initializer=self.initializer)
            args = [(self.f_build, self.f_export, b.mod, b.target, _serialize_params(b.params))
                    for b in build_inputs]
            results = []
            for r in self.pool.map_with_error_catching(lambda x: _worker_func(*x), args):
                if r.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(r.value, None))
                else:
                    results.append(BuilderResult(None, f"LocalBuilder: {r.status}: {r.value}"))
            return results

        def _sanity_check(self):  # would start (and pay for) a throw-away pool
            pass

    return PersistentLocalBuilder(max_workers=max_workers, timeout_sec=timeout_sec)


def single_thread_space():
    """The default LLVM design space without parallel loops: candidates run on one thread.

    MetaSchedule's ParallelizeVectorizeUnroll otherwise parallelises outer loops for the
    target's num-cores; max_jobs_per_core=-1 turns that off (vectorize and unroll stay).
    """
    from tvm.s_tir import meta_schedule as ms

    rules = [ms.schedule_rule.ParallelizeVectorizeUnroll(max_jobs_per_core=-1, max_vectorize_extent=64,
                                                         unroll_max_steps=[0, 16, 64, 512], unroll_explicit=True)
             if isinstance(r, ms.schedule_rule.ParallelizeVectorizeUnroll) else r
             for r in ms.ScheduleRule.create("llvm")]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="llvm", mutator_probs="llvm")


@dataclass(frozen=True)
class Budget:
    """Measured candidates a task should get: more for the heaviest, which hold most of the time."""
    heavy_tasks: int = 20
    heavy_trials: int = 256
    light_trials: int = 64

    def of(self, rank: int) -> int:
        return self.heavy_trials if rank < self.heavy_tasks else self.light_trials


@dataclass
class Task:
    rank: int          # 0: the heaviest
    name: str
    key: str           # the workload's structural hash, as the database files write it
    share: float       # of the graph's FLOPs x uses
    extracted: object  # MetaSchedule's ExtractedTask


def graph_tasks(variant: str, target, onnx_path: Path) -> list[Task]:
    """The tuning tasks of `variant`'s graph for `target`, heaviest (FLOPs x uses) first."""
    import tvm_ffi
    from tvm.s_tir.analysis import estimate_tir_flops
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    mod = prepare(relax_module(onnx_path, variant), target, GRAPH)
    extracted = extract_tasks(mod, target, module_equality=MODULE_EQUALITY)
    costs = [t.weight * estimate_tir_flops(t.dispatched[0]) for t in extracted]
    total = sum(costs) or 1.0
    order = sorted(range(len(extracted)), key=lambda i: -costs[i])
    return [Task(rank, extracted[i].task_name, str(tvm_ffi.structural_hash(extracted[i].dispatched[0])),
                 costs[i] / total, extracted[i]) for rank, i in enumerate(order)]


def tuning_target(isa: str | None, mcpu: str | None, threads: int):
    """The target tuned for: `mcpu`, else this CPU when it is of `isa`, else the ISA's stand-in."""
    from .cpu import runs_here, tuning_target as target_dir

    target = host_target(mcpu, num_cores=threads)
    if isa and not mcpu and target_dir(target) != f"x86-{isa}":
        target = host_target(ISA_MCPU[isa], num_cores=threads)
    missing = runs_here(target)
    if missing:
        raise SystemExit(f"this CPU cannot run code for {target.attrs['mcpu']} (it lacks {', '.join(missing)}): "
                         "tune on a CPU that has them")
    return target


def next_task(tasks: list[Task], ledger: Ledger, budget: Budget, exhausted: set[str]) -> Task | None:
    """The heaviest task not yet tuned at all, so a database covers the whole graph early (a build
    with a task missing from the database gets an untuned kernel); then the heaviest under its
    budget; once all are met, the least tuned for its budget."""
    live = [t for t in tasks if t.key not in exhausted]
    if not live:
        return None
    untouched = [t for t in live if ledger.measured(t.key) == 0]
    if untouched:
        return untouched[0]
    under = [t for t in live if ledger.measured(t.key) < budget.of(t.rank)]
    if under:
        return under[0]
    return min(live, key=lambda t: ledger.measured(t.key) / budget.of(t.rank))


def tune(variant: str, minutes: float | None = None, trials: int | None = None, round_trials: int = 32,
         max_tasks: int | None = None, shard: tuple[int, int] = (0, 1), isa: str | None = None,
         mcpu: str | None = None, threads: int = 1, budget: Budget = Budget(), tuning_dir: Path = TUNING_DIR,
         build_dir: Path = BUILD_DIR, onnx_path: Path | None = None, out_dir: Path | None = None,
         from_scratch: bool = False, seed: int = 0) -> dict:
    """Tune `variant` round by round until `minutes` or `trials` (measured candidates) are spent."""
    os.environ["TVM_NUM_THREADS"] = str(threads)  # read by the runner's worker processes
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extracted_tasks_to_tune_contexts

    from .cpu import cpuinfo, tuning_target as target_dir

    t0 = time.monotonic()
    onnx_path = onnx_path or Builder(variant, build_dir, tuning_dir).ensure("onnx")
    target = tuning_target(isa, mcpu, threads)  # parallel loops shaped for the threads measured
    out_dir = out_dir or tuning_db_dir(variant, target, tuning_dir)
    tasks = graph_tasks(variant, target, onnx_path)
    n_graph = len(tasks)
    k, n = shard  # shard k of n takes every n-th task: each gets heavy and light ones
    tasks = tasks[:max_tasks][k::n]
    db = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)  # every record of this run
    if not from_scratch and (out_dir / "database_workload.json").is_file():
        for record in open_database(out_dir).get_all_tuning_records():  # they seed the search
            db.commit_tuning_record(record)
    with locked(out_dir):
        _note_run(out_dir, variant, target, tasks, n_graph, budget, threads)
    build_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"tune-{variant}-", dir=build_dir))
    workers = max(1, len(os.sched_getaffinity(0)) // n)
    builder = _persistent_builder(timeout_sec=600, max_workers=workers)
    runner = ms.runner.LocalRunner(timeout_sec=60, evaluator_config=ms.runner.EvaluatorConfig(
        number=5, repeat=1, min_repeat_ms=20))
    cost_model = ms.cost_model.XGBModel(num_tuning_cores=workers)
    deadline = t0 + minutes * 60 if minutes else None
    log.info("%s: %d of the graph's %d tasks (shard %d/%d) for %s (%s), measured on %d thread(s) on %s; "
             "rounds of %d; %s; database %s; work dir %s", variant, len(tasks), n_graph, k, n, target.attrs["mcpu"],
             target_dir(target), threads, cpuinfo()["model_name"], round_trials,
             f"{minutes:g} min" if minutes else f"{trials} trials", out_dir, work_dir)
    measured_run, rounds, exhausted, last_round = 0, 0, set[str](), 0.0
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now + last_round > deadline:
                break
            if trials is not None and measured_run >= trials:
                break
            ledger = Ledger.read(out_dir)
            task = next_task(tasks, ledger, budget, exhausted)
            if task is None:
                log.info("%s: every task's search space is spent", variant)
                break
            per_round = round_trials if trials is None else min(round_trials, trials - measured_run)
            (ctx,), _ = extracted_tasks_to_tune_contexts(
                [task.extracted], str(work_dir),
                space=single_thread_space() if threads == 1 else "post-order-apply",
                strategy=ms.search_strategy.EvolutionarySearch(population_size=256, genetic_num_iters=3),
                seed=seed + rounds + ledger.measured(task.key))
            before = len(db)
            # MetaSchedule re-configures its logger each call (a table per batch on stdout): quiet it
            logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
            try:
                ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(work_dir), max_trials_global=per_round,
                              max_trials_per_task=per_round, num_trials_per_iter=min(32, per_round),
                              builder=builder, runner=runner, database=db, cost_model=cost_model,
                              task_scheduler="round-robin", module_equality=MODULE_EQUALITY)
            except Exception as e:  # noqa: BLE001 - one task MetaSchedule cannot search must not end the run
                log.warning("task %d/%d %s: skipped for this run: %s", task.rank + 1, len(tasks), task.name,
                            (str(e).strip().splitlines() or [type(e).__name__])[-1][:300])
                exhausted.add(task.key)
            new = list(db.get_all_tuning_records())[before:]
            valid = sum(1 for r in new if _valid(r))
            if not valid:  # its space is spent, or every candidate failed: skip it for this run, not forever
                exhausted.add(task.key)
            rounds += 1
            measured_run += len(new)
            last_round = time.monotonic() - now
            _report_round(out_dir, variant, task, len(tasks), new, valid, budget, tasks, t0, deadline, rounds)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    stats = verify(out_dir) if (out_dir / "database_tuning_record.json").is_file() else {}
    stats.update(variant=variant, rounds=rounds, measured=measured_run,
                 minutes=round((time.monotonic() - t0) / 60, 1))
    log.info("%s: done: %s", variant, stats)
    return stats


def _note_run(out_dir: Path, variant: str, target, tasks: list[Task], n_graph: int, budget: Budget,
              threads: int) -> None:
    """Record the graph's tasks (name, rank, share, budget) and this CPU in trials.json."""
    from .cpu import cpuinfo, tuning_target as target_dir

    ledger = Ledger.read(out_dir)
    ledger.data.update(variant=variant, target=target_dir(target), mcpu=str(target.attrs["mcpu"]), threads=threads,
                       graph_tasks=n_graph)
    cpu = cpuinfo()["model_name"]
    if cpu not in ledger.data["timed_on"]:
        ledger.data["timed_on"].append(cpu)
    for t in tasks:
        ledger.entry(t.key).update(task=t.name, rank=t.rank, share=round(t.share, 6), budget=budget.of(t.rank))
    ledger.write()


def _report_round(out_dir: Path, variant: str, task: Task, n_tasks: int, new: list, valid: int,
                  budget: Budget, tasks: list[Task], t0: float, deadline: float | None, rounds: int) -> None:
    """Fold the round into the committed database, count it in trials.json, log one line."""
    with locked(out_dir):
        was = Database.read(out_dir).records.get(task.key)
        improved = fold(out_dir, new)
        ledger = Ledger.read(out_dir)
        entry = ledger.entry(task.key)
        entry["measured"] = entry.get("measured", 0) + valid
        entry["failed"] = entry.get("failed", 0) + len(new) - valid
        best = Database.read(out_dir).records.get(task.key)
        if best is not None:
            entry["best_ms"] = round(_secs(best) * 1e3, 4)
        ledger.write()
        write_atomic(out_dir / "README.md", readme(ledger))
    met = [t for t in tasks if ledger.measured(t.key) >= budget.of(t.rank)]
    heavy = [t for t in tasks if t.rank < budget.heavy_tasks]
    elapsed = (time.monotonic() - t0) / 60
    left = f", {(deadline - time.monotonic()) / 60:.1f} left" if deadline else ""
    log.info("round %d: task %d/%d %s (%.1f%% of FLOPs): %d/%d measured (+%d, %d failed), best %s ms%s; "
             "budget met by %d/%d tasks (%d/%d heavy); %.1f min%s", rounds, task.rank + 1, n_tasks, task.name,
             task.share * 100, ledger.measured(task.key), budget.of(task.rank), valid, len(new) - valid,
             f"{_secs(best) * 1e3:.4f}" if best else "-",
             f" (was {_secs(was) * 1e3:.4f})" if task.key in improved and was else "",
             len(met), len(tasks), sum(1 for t in met if t in heavy), len(heavy), elapsed, left)


def _secs(record_json: list) -> float:
    return sum(float(s) for s in record_json[1]) / len(record_json[1])


def readme(ledger: Ledger) -> str:
    """The database's README: the CPU it was timed on and the measured candidates per task."""
    d = ledger.data
    rows = sorted((e for e in d["workloads"].values() if "rank" in e), key=lambda e: e["rank"])
    met = sum(1 for e in rows if e.get("measured", 0) >= e.get("budget", 0))
    lines = [f"# Tuning database: {d.get('variant')} / {d.get('target')}", "",
             f"Written by `facetrack tune-model` (models/tune.py) after every round; do not edit by hand. "
             f"Schedules for LLVM CPU `{d.get('mcpu')}`, measured on {d.get('threads', 1)} thread(s) on: "
             f"{', '.join(d['timed_on']) or 'unknown'}.", ""]
    if d.get("target") == "x86-avx2":
        lines += ["AVX2 code was built for an AVX2 `mcpu` and timed on an AVX-512 machine (which runs AVX2 "
                  "code): the times are that CPU's, not an AVX2 machine's.", ""]
    lines += [f"{len(rows)} tasks of the graph ({d.get('graph_tasks', len(rows))}); budget met by {met}. "
              "`measured`: valid candidates timed (failed builds and runs counted apart).", "",
              "| rank | task | share of FLOPs | measured | failed | budget | best ms |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {e['rank'] + 1} | {e.get('task', '?')} | {e.get('share', 0) * 100:.2f} % | {e.get('measured', 0)} | "
              f"{e.get('failed', 0)} | {e.get('budget', '')} | {e.get('best_ms', '')} |" for e in rows]
    return "\n".join(lines) + "\n"


def merge(out_dir: Path, others: list[Path], threads: int = 1, mcpu: str | None = None) -> dict:
    """Fold databases tuned elsewhere into `out_dir`; where both hold a workload, time both here.

    Times from another machine do not compare with ours: every contested candidate is
    measured again here and the fastest here is kept, with the time measured here.
    """
    import tvm_ffi

    def best_of(database) -> dict[str, object]:
        best: dict[str, object] = {}
        for record in database.get_all_tuning_records():
            key = str(tvm_ffi.structural_hash(record.workload.mod))
            if _valid(record) and (key not in best or _mean(record) < _mean(best[key])):
                best[key] = record
        return best

    candidates: dict[str, list] = {k: [r] for k, r in best_of(open_database(out_dir, allow_missing=True)).items()}
    for other in others:
        for key, record in best_of(open_database(other)).items():
            candidates.setdefault(key, []).append(record)
    contested = [r for rs in candidates.values() if len(rs) > 1 for r in rs]
    here = dict(zip(map(id, contested), measure_here(contested, threads, mcpu))) if contested else {}
    log.info("%d workloads; %d measured again here", len(candidates), len(contested))
    with locked(out_dir):
        db = Database.read(out_dir)
        singles = [rs[0] for key, rs in candidates.items() if len(rs) == 1 and key not in db.records]
        for key, workload, rec in records_json(singles):
            db.offer(key, rec, workload)
        for key, records in candidates.items():
            if len(records) == 1:
                continue
            winner = min(records, key=lambda r: here[id(r)])
            if here[id(winner)] >= INVALID_RUN_SECS:
                continue  # none of them ran here: keep what is there
            ((_, workload, rec),) = records_json([winner])
            db.workloads.setdefault(key, workload)
            db.records[key] = [rec[0], [here[id(winner)]], *rec[2:]]
        db.write(out_dir)
    return verify(out_dir)


def measure_here(records: list, threads: int = 1, mcpu: str | None = None) -> list[float]:
    """Seconds per run of each record's schedule, built and timed on this machine."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    target = host_target(mcpu, num_cores=threads)
    mods = []
    for r in records:
        sch = Schedule(r.workload.mod)
        r.trace.apply_to_schedule(sch, remove_postproc=False)
        mods.append(sch.mod)
    log.info("measuring %d schedules here on %d thread(s)", len(mods), threads)
    built = _persistent_builder(timeout_sec=600, max_workers=os.cpu_count() or 1).build(
        [ms.builder.BuilderInput(m, target) for m in mods])
    runner = ms.runner.LocalRunner(timeout_sec=60, evaluator_config=ms.runner.EvaluatorConfig(
        number=10, repeat=3, min_repeat_ms=50))
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, "cpu", records[i].args_info) for i in ok])
    seconds = [INVALID_RUN_SECS * 10] * len(records)
    for i, future in zip(ok, futures):
        result = future.result()
        if result.error_msg is None and result.run_secs:
            seconds[i] = min(float(s) for s in result.run_secs)
    for b in built:
        if b.artifact_path:
            shutil.rmtree(os.path.dirname(b.artifact_path), ignore_errors=True)
    return seconds


def _mean(record) -> float:
    return sum(float(s) for s in record.run_secs) / len(record.run_secs)


def _valid(record) -> bool:
    return bool(record.run_secs) and all(float(s) < INVALID_RUN_SECS for s in record.run_secs)


def verify(db_dir: Path) -> dict:
    """Count workloads and valid records in a database; raise if it holds no valid record."""

    records = open_database(db_dir).get_all_tuning_records()
    valid = [r for r in records if _valid(r)]
    if not valid:
        raise RuntimeError(f"tuning database {db_dir} holds no valid record ({len(records)} records)")
    ms_total = sum(_mean(r) for r in valid) * 1e3
    return {"records": len(records), "valid": len(valid), "sum_best_ms": round(ms_total, 3)}


def coverage(variant: str, db_dir: Path, onnx_path: Path | None = None) -> tuple[int, int, list[str]]:
    """(tasks of `variant`'s graph with a valid record in `db_dir`, all its tasks, the names missing).

    The graph is made for the database's own target (models/cpu.py names the folder after it).
    """
    target = target_of_db(db_dir.name)
    tasks = graph_tasks(variant, target, onnx_path or Builder(variant).ensure("onnx"))
    have = set(Database.read(db_dir).records)
    missing = [t.name for t in tasks if t.key not in have]
    return len(tasks) - len(missing), len(tasks), missing


def target_of_db(name: str):
    """A TVM target for a database folder name (x86-avx512, x86-avx2, pi5-cortex-a76)."""
    import tvm

    from .cpu import ARM_TARGETS

    arm = {folder: mcpu for mcpu, folder in ARM_TARGETS.items()}
    if name in arm:
        return tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": arm[name], "num-cores": 1})
    isa = name.removeprefix("x86-")
    if isa not in ISA_MCPU:
        raise ValueError(f"no target known for tuning database folder {name!r}")
    return tuning_target(isa, None, 1)


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"shard must be K/N with 0 <= K < N, not {text!r}")
    return int(k), int(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack tune-model", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="full")
    p.add_argument("--isa", choices=sorted(ISA_MCPU),
                   help="tune for this x86 vector ISA (default: this CPU's); avx2 runs on an AVX-512 host")
    p.add_argument("--mcpu", help="tune for this CPU (LLVM name) instead of this machine's or --isa's")
    p.add_argument("--minutes", type=float, help="stop starting rounds after this long (default: --trials)")
    p.add_argument("--trials", type=int, help="stop after this many measured candidates (default 500 "
                   "without --minutes)")
    p.add_argument("--round-trials", type=int, default=32, help="candidates per round of one task (default 32)")
    p.add_argument("--heavy-tasks", type=int, default=Budget.heavy_tasks, help="how many tasks count as heavy")
    p.add_argument("--heavy-trials", type=int, default=Budget.heavy_trials, help="budget of each heavy task")
    p.add_argument("--light-trials", type=int, default=Budget.light_trials, help="budget of every other task")
    p.add_argument("--tasks", type=int, help="tune only the N heaviest tasks (FLOPs x uses)")
    p.add_argument("--threads", type=int, default=1, help="threads each candidate is measured on (default 1)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N", help="tune only every N-th task from K")
    p.add_argument("--onnx", type=Path, help="tune this ONNX file instead of building it")
    p.add_argument("--out", type=Path, help="the database to grow, instead of models/tuning/<variant>/<target>")
    p.add_argument("--from-scratch", action="store_true",
                   help="do not seed the search with the database's records (they are still kept)")
    p.add_argument("--verify", action="store_true", help="only check the committed database")
    p.add_argument("--salvage", type=Path, metavar="WORK_DIR",
                   help="fold the records of an interrupted run's work directory into the database")
    p.add_argument("--merge", type=Path, nargs="+", metavar="DB_DIR",
                   help="fold databases tuned elsewhere into the committed one (contested: the fastest here)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    budget = Budget(args.heavy_tasks, args.heavy_trials, args.light_trials)
    for variant in variants:
        if args.salvage or args.merge or args.verify:
            out_dir = args.out or tuning_db_dir(variant, tuning_target(args.isa, args.mcpu, args.threads), TUNING_DIR)
        if args.salvage:
            with locked(out_dir):
                improved = fold(out_dir, open_database(args.salvage).get_all_tuning_records())
            log.info("%s: %d workloads improved; %s", variant, len(improved), verify(out_dir))
        elif args.merge:
            mcpu = str(tuning_target(args.isa, args.mcpu, args.threads).attrs["mcpu"])
            log.info("%s: %s", variant, merge(out_dir, args.merge, threads=args.threads, mcpu=mcpu))
        elif args.verify:
            covered, total, missing = coverage(variant, out_dir, args.onnx)
            log.info("%s: %s; covers %d of %d tasks of the graph%s", variant, verify(out_dir), covered, total,
                     f" (missing: {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''})" if missing else "")
        else:
            trials = args.trials if args.trials is not None or args.minutes else 500
            tune(variant, args.minutes, trials, args.round_trials, args.tasks, args.shard, args.isa, args.mcpu,
                 args.threads, budget, onnx_path=args.onnx, out_dir=args.out, from_scratch=args.from_scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
