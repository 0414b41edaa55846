"""`facetrack tune-model --trials N`: MetaSchedule tuning of the host llvm build.

The database is kept in models/tuning/<variant>/ (committed; only the best record of each
workload is kept, so it stays small) and applied by every later `build-model`. Two traps
of TVM 0.27 on small machines are handled here:
- MetaSchedule's LocalBuilder starts a fresh process pool for every batch, and each worker
  spends ~26 s importing tvm.s_tir.tensor_intrin: the default 30 s timeout makes every
  trial fail while the run "succeeds". This builder keeps one pool alive (paying the start
  once) with a long timeout, and the result is checked for valid records.
- Without max_trials_per_task a small budget tunes only the first task: the budget is
  spread over all tasks.
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

from .build import BUILD_DIR, TUNING_DIR, VARIANTS, Builder, fuse_for_cpu, host_target, relax_module, tuning_db_files

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


def tune(variant: str, trials: int, per_task: int | None = None, max_tasks: int | None = None,
         tuning_dir: Path = TUNING_DIR, build_dir: Path = BUILD_DIR, seed: int = 0) -> dict:
    """Tune `variant` for about `trials` measured candidates; write and verify the database."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks, extracted_tasks_to_tune_contexts

    onnx_path = Builder(variant, build_dir, tuning_dir).ensure("onnx")
    target = host_target()
    mod = fuse_for_cpu(relax_module(onnx_path, variant), target)
    work_dir = Path(tempfile.mkdtemp(prefix=f"tune-{variant}-", dir=build_dir))
    out_dir = tuning_dir / variant
    for f in tuning_db_files(variant, tuning_dir):  # continue from the committed records
        shutil.copy(f, work_dir / f.name)
    # Heaviest tasks first: a run cut short (see --salvage) has then tuned what matters most.
    # MetaSchedule records results only after a first pass over all tasks: a run stopped
    # before that keeps nothing, so a short budget should tune fewer tasks (--tasks).
    extracted = sorted(extract_tasks(mod, target), key=lambda t: -t.weight * estimate_tir_flops(t.dispatched[0]))
    extracted = extracted[:max_tasks]
    contexts, weights = extracted_tasks_to_tune_contexts(
        extracted, str(work_dir),
        strategy=ms.search_strategy.EvolutionarySearch(population_size=256, genetic_num_iters=3), seed=seed)
    tasks = list(zip(contexts, weights))
    per_task = per_task or max(4, math.ceil(trials / len(tasks)))
    log.info("%s: %d tasks, %d trials (%d per task) on %s; work dir %s", variant, len(tasks), trials, per_task,
             target, work_dir)
    t0 = time.perf_counter()
    db = ms.tune_tasks(
        tasks=[t for t, _ in tasks], task_weights=[w for _, w in tasks], work_dir=str(work_dir),
        max_trials_global=trials, max_trials_per_task=per_task, num_trials_per_iter=min(32, per_task),
        builder=_persistent_builder(timeout_sec=600, max_workers=os.cpu_count() or 1),
        runner=ms.runner.LocalRunner(timeout_sec=60, evaluator_config=ms.runner.EvaluatorConfig(
            number=5, repeat=1, min_repeat_ms=20)))
    seconds = time.perf_counter() - t0
    stats = save_best(db, out_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    stats.update(variant=variant, tasks=len(tasks), trials=trials, seconds=round(seconds, 1))
    log.info("%s: tuned in %.0f s: %s", variant, seconds, stats)
    return stats


def save_best(db, out_dir: Path) -> dict:
    """Keep the best valid record of each workload in a fresh JSON database at `out_dir`."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    best: dict[int, object] = {}
    for record in db.get_all_tuning_records():
        key = tvm_ffi.structural_hash(record.workload.mod)
        if _valid(record) and (key not in best or _mean(record) < _mean(best[key])):
            best[key] = record
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".db-", dir=out_dir))
    new = ms.database.JSONDatabase(str(tmp / "database_workload.json"), str(tmp / "database_tuning_record.json"))
    for r in best.values():
        new.commit_tuning_record(ms.database.TuningRecord(
            r.trace, new.commit_workload(r.workload.mod), r.run_secs, r.target, r.args_info))
    for name in ("database_workload.json", "database_tuning_record.json"):
        os.replace(tmp / name, out_dir / name)
    shutil.rmtree(tmp, ignore_errors=True)
    return verify(out_dir)


def _mean(record) -> float:
    return sum(float(s) for s in record.run_secs) / len(record.run_secs)


def _valid(record) -> bool:
    return bool(record.run_secs) and all(float(s) < INVALID_RUN_SECS for s in record.run_secs)


def verify(db_dir: Path) -> dict:
    """Count workloads and valid records in a database; raise if it holds no valid record."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(str(db_dir / "database_workload.json"),
                                  str(db_dir / "database_tuning_record.json"), allow_missing=False)
    records = db.get_all_tuning_records()
    valid = [r for r in records if _valid(r)]
    if not valid:
        raise RuntimeError(f"tuning database {db_dir} holds no valid record ({len(records)} records)")
    ms_total = sum(_mean(r) for r in valid) * 1e3
    return {"records": len(records), "valid": len(valid), "sum_best_ms": round(ms_total, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facetrack tune-model", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=[*VARIANTS, "all"], default="full")
    p.add_argument("--trials", type=int, default=500, help="total measured candidates")
    p.add_argument("--per-task", type=int, help="cap per task (default: trials spread over all tasks)")
    p.add_argument("--tasks", type=int, help="tune only the N heaviest tasks (FLOPs x uses)")
    p.add_argument("--verify", action="store_true", help="only check the committed database")
    p.add_argument("--salvage", type=Path, metavar="WORK_DIR",
                   help="keep the best records of an interrupted run's work directory")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    for variant in variants:
        if args.salvage:
            from tvm.s_tir import meta_schedule as ms

            db = ms.database.JSONDatabase(work_dir=str(args.salvage), allow_missing=False)
            log.info("%s: %s", variant, save_best(db, TUNING_DIR / variant))
        elif args.verify:
            log.info("%s: %s", variant, verify(TUNING_DIR / variant))
        else:
            tune(variant, args.trials, args.per_task, args.tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
