"""`facetrack tune-model --trials N`: MetaSchedule tuning of the host llvm build.

The database is kept in models/tuning/<variant>/<target>/ (committed; the target is the ISA of
the CPU tuned for, models/cpu.py; only the best record of each workload is kept, so it stays
small) and applied by every later `build-model` for that target. Candidates come from a
single-thread design space (no parallel loops) of the graph models/graph.py makes. Two traps
of TVM 0.27 on small machines are handled here:
- MetaSchedule's LocalBuilder starts a fresh process pool for every batch, and each worker
  spends ~26 s importing tvm.s_tir.tensor_intrin: the default 30 s timeout makes every
  trial fail while the run "succeeds". This builder keeps one pool alive (paying the start
  once) with a long timeout, and the result is checked for valid records.
- Without max_trials_per_task a small budget tunes only the first task: the budget is
  spread over all tasks.
Candidates are measured on `--threads` threads (default 1, as the detector and the bench run):
a schedule tuned on every core is not the best one on one. A larger machine of the same
instruction set can tune for this one: `--mcpu` names this CPU, `--shard K/N` splits the
tasks over N processes, and `--merge` folds their databases into the committed one.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .build import BUILD_DIR, TUNING_DIR, VARIANTS, Builder, host_target, relax_module, tuning_db_dir
from .graph import DEFAULT as GRAPH, MODULE_EQUALITY, open_database, prepare

log = logging.getLogger("facetrack.models.tune")

INVALID_RUN_SECS = 1e9  # MetaSchedule records failed trials with run_secs of 1e10


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


def tune(variant: str, trials: int, per_task: int | None = None, max_tasks: int | None = None,
         tuning_dir: Path = TUNING_DIR, build_dir: Path = BUILD_DIR, seed: int = 0, threads: int = 1,
         shard: tuple[int, int] = (0, 1), mcpu: str | None = None, onnx_path: Path | None = None,
         out_dir: Path | None = None, from_scratch: bool = False) -> dict:
    """Tune `variant` for about `trials` measured candidates; write and verify the database."""
    os.environ["TVM_NUM_THREADS"] = str(threads)  # read by the runner's worker processes
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks, extracted_tasks_to_tune_contexts

    onnx_path = onnx_path or Builder(variant, build_dir, tuning_dir).ensure("onnx")
    target = host_target(mcpu, num_cores=threads)  # parallel loops shaped for the threads measured
    mod = prepare(relax_module(onnx_path, variant), target, GRAPH)
    build_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"tune-{variant}-", dir=build_dir))
    out_dir = out_dir or tuning_db_dir(variant, target, tuning_dir)
    seeds = None
    if not from_scratch and (out_dir / "database_workload.json").is_file():
        for name in ("database_workload.json", "database_tuning_record.json"):  # they seed the search
            shutil.copy(out_dir / name, work_dir / name)
        seeds = open_database(work_dir)
    # Heaviest tasks first: a run cut short (see --salvage) has then tuned what matters most.
    # MetaSchedule records results only after a first pass over all tasks: a run stopped
    # before that keeps nothing, so a short budget should tune fewer tasks (--tasks).
    extracted = sorted(extract_tasks(mod, target, module_equality=MODULE_EQUALITY),
                       key=lambda t: -t.weight * estimate_tir_flops(t.dispatched[0]))
    k, n = shard  # shard k of n takes every n-th task: each gets heavy and light ones
    extracted = extracted[:max_tasks][k::n]
    contexts, weights = extracted_tasks_to_tune_contexts(
        extracted, str(work_dir), space=single_thread_space() if threads == 1 else "post-order-apply",
        strategy=ms.search_strategy.EvolutionarySearch(population_size=256, genetic_num_iters=3), seed=seed)
    tasks = list(zip(contexts, weights))
    per_task = per_task or max(4, math.ceil(trials / len(tasks)))
    log.info("%s: %d tasks (shard %d/%d), %d trials (%d per task) on %s, measured on %d thread(s); work dir %s",
             variant, len(tasks), k, n, trials, per_task, target, threads, work_dir)
    t0 = time.perf_counter()
    db = ms.tune_tasks(
        tasks=[t for t, _ in tasks], task_weights=[w for _, w in tasks], work_dir=str(work_dir),
        max_trials_global=trials, max_trials_per_task=per_task, num_trials_per_iter=min(32, per_task),
        database=open_database(work_dir, allow_missing=True), module_equality=MODULE_EQUALITY,
        builder=_persistent_builder(timeout_sec=600, max_workers=max(1, (os.cpu_count() or 1) // n)),
        runner=ms.runner.LocalRunner(timeout_sec=60, evaluator_config=ms.runner.EvaluatorConfig(
            number=5, repeat=1, min_repeat_ms=20)))
    seconds = time.perf_counter() - t0
    stats = save_best(db, out_dir, seeds=seeds, tuned=[ctx.mod for ctx, _ in tasks], mcpu=mcpu)
    shutil.rmtree(work_dir, ignore_errors=True)
    stats.update(variant=variant, tasks=len(tasks), trials=trials, seconds=round(seconds, 1))
    log.info("%s: tuned in %.0f s: %s", variant, seconds, stats)
    return stats


def save_best(db, out_dir: Path, others: list | None = None, threads: int = 1, seeds=None,
              tuned: list | None = None, mcpu: str | None = None) -> dict:
    """Keep the best valid record of each workload in a fresh JSON database at `out_dir`.

    `others` are databases tuned elsewhere (another machine, other shards): their times do
    not compare with ours, so where two databases hold a workload, every candidate is
    measured again here and the fastest here is kept, with the time measured here.
    `seeds` are the records `db` started from, maybe timed on another machine: a workload
    of `tuned` (the run's task modules) keeps its best seed only if the run measured nothing
    valid for it; seeds of workloads not tuned are left out.
    """
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    def key_of(record) -> int:
        return tvm_ffi.structural_hash(record.workload.mod)

    def mark(record) -> tuple:
        return key_of(record), tuple(float(s) for s in record.run_secs)

    def best_of(database, skip=frozenset()) -> dict[int, object]:
        best: dict[int, object] = {}
        for record in database.get_all_tuning_records():
            key = key_of(record)
            if (_valid(record) and mark(record) not in skip
                    and (key not in best or _mean(record) < _mean(best[key]))):
                best[key] = record
        return best

    tuned_keys = {tvm_ffi.structural_hash(m) for m in tuned or []}
    seeded = {k: r for k, r in best_of(seeds).items() if k in tuned_keys} if seeds is not None else {}
    marks = frozenset(mark(r) for r in seeds.get_all_tuning_records()) if seeds is not None else frozenset()
    candidates: dict[int, list] = {k: [r] for k, r in (seeded | best_of(db, marks)).items()}
    for other in others or []:
        for key, record in best_of(other).items():
            candidates.setdefault(key, []).append(record)
    contested = [r for rs in candidates.values() if len(rs) > 1 for r in rs]
    here = dict(zip(map(id, contested), measure_here(contested, threads, mcpu))) if contested else {}
    chosen = []
    for records in candidates.values():
        if len(records) == 1:
            chosen.append((records[0], records[0].run_secs))
        else:
            winner = min(records, key=lambda r: here[id(r)])
            chosen.append((winner, [here[id(winner)]]))
    log.info("%d workloads; %d measured again here", len(candidates), len({id(r) for r in contested}))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".db-", dir=out_dir))
    new = open_database(tmp, allow_missing=True)
    for r, run_secs in chosen:
        new.commit_tuning_record(ms.database.TuningRecord(
            r.trace, new.commit_workload(r.workload.mod), run_secs, r.target, r.args_info))
    for name in ("database_workload.json", "database_tuning_record.json"):
        os.replace(tmp / name, out_dir / name)
    shutil.rmtree(tmp, ignore_errors=True)
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


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"shard must be K/N with 0 <= K < N, not {text!r}")
    return int(k), int(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack tune-model", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="full")
    p.add_argument("--trials", type=int, default=500, help="total measured candidates")
    p.add_argument("--per-task", type=int, help="cap per task (default: trials spread over all tasks)")
    p.add_argument("--tasks", type=int, help="tune only the N heaviest tasks (FLOPs x uses)")
    p.add_argument("--threads", type=int, default=1, help="threads each candidate is measured on (default 1)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N", help="tune only every N-th task from K")
    p.add_argument("--mcpu", help="tune for this CPU (LLVM name) instead of this machine's")
    p.add_argument("--onnx", type=Path, help="tune this ONNX file instead of building it")
    p.add_argument("--out", type=Path, help="write the database here instead of models/tuning/<variant>")
    p.add_argument("--from-scratch", action="store_true", help="do not start from the committed records")
    p.add_argument("--verify", action="store_true", help="only check the committed database")
    p.add_argument("--salvage", type=Path, metavar="WORK_DIR",
                   help="keep the best records of an interrupted run's work directory")
    p.add_argument("--merge", type=Path, nargs="+", metavar="DB_DIR",
                   help="fold databases tuned elsewhere into the committed one (the fastest here wins)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    for variant in variants:
        out_dir = args.out or tuning_db_dir(variant, host_target(args.mcpu), TUNING_DIR)
        if args.salvage:
            seeds = open_database(out_dir, allow_missing=True)  # records a continued run started from
            log.info("%s: %s", variant, save_best(open_database(args.salvage), out_dir, seeds=seeds))
        elif args.merge:
            log.info("%s: %s", variant, save_best(open_database(out_dir, allow_missing=True), out_dir,
                                                  others=[open_database(d) for d in args.merge], threads=args.threads))
        elif args.verify:
            log.info("%s: %s", variant, verify(out_dir))
        else:
            tune(variant, args.trials, args.per_task, args.tasks, threads=args.threads, shard=args.shard,
                 mcpu=args.mcpu, onnx_path=args.onnx, out_dir=args.out, from_scratch=args.from_scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
