"""`python -m models.profile`: where the tuned detector's time goes, per kernel, one JSON object.

Each task of the graph (a fused PrimFunc) with the best time its tuning database holds for
it, times how often the graph calls it. Times are MetaSchedule's measurements (one kernel
alone, warm caches, the machine the record was measured on: see models/tuning/README.md),
so the sum is a floor under the end-to-end latency; untuned tasks have no time.
"""
from __future__ import annotations

import argparse
import json
import sys

from .build import BUILD_DIR, Builder, host_target, relax_module, tuning_db_path
from .graph import DEFAULT as GRAPH, MODULE_EQUALITY, open_database, prepare


def profile(variant: str = "full", top: int = 15) -> dict:
    import tvm_ffi
    from tvm.s_tir.analysis import estimate_tir_flops
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    target = host_target(num_cores=1)
    db_dir = tuning_db_path(variant, target)
    mod = prepare(relax_module(Builder(variant, BUILD_DIR).ensure("onnx"), variant), target, GRAPH)
    best: dict[int, float] = {}
    if db_dir is not None:
        for r in open_database(db_dir).get_all_tuning_records():
            key, secs = tvm_ffi.structural_hash(r.workload.mod), min(float(s) for s in r.run_secs)
            best[key] = min(best.get(key, secs), secs)
    rows = []
    for task in extract_tasks(mod, target, module_equality=MODULE_EQUALITY):
        func = task.dispatched[0]
        task_secs = best.get(tvm_ffi.structural_hash(func))
        flops = estimate_tir_flops(func)
        rows.append({"task": task.task_name, "calls": int(task.weight),
                     "us_each": round(task_secs * 1e6, 1) if task_secs else None,
                     "us_total": round(task_secs * 1e6 * task.weight, 1) if task_secs else None,
                     "gflops": round(flops / task_secs / 1e9, 1) if task_secs else None})
    tuned = [r for r in rows if r["us_total"] is not None]
    tuned.sort(key=lambda r: -r["us_total"])
    return {"variant": variant, "database": str(db_dir), "tasks": len(rows), "tuned": len(tuned),
            "sum_tuned_ms": round(sum(r["us_total"] for r in tuned) / 1e3, 3),
            "untuned": sorted(r["task"] for r in rows if r["us_total"] is None), "top": tuned[:top]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.profile", description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=["short", "full"], default="full")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    print(json.dumps(profile(args.variant, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
