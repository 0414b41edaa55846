"""The Relax graph the CPU builds compile, and the options that shape it.

One place for what tune.py and build.py must agree on: a tuning database holds schedules
per workload (the fused PrimFunc), so the graph tuned and the graph built must be made by
the same passes with the same options, or the records silently stop matching.

- layout "NHWC": convs in NHWC/HWIO (`ConvertLayout` + `FoldConstant`: the weights are
  transposed at compile time). The model takes NHWC input, so the input transpose cancels
  against the one ConvertLayout puts before the first conv (`CancelTransposes`); XNNPACK
  runs NHWC too. "NCHW" is the graph as exported.
- prepack: weights are marked layout-free (`AttachAttrLayoutFreeBuffers`), so MetaSchedule's
  RewriteLayout postproc may store them in the order its schedule reads them; at build the
  rewrite is split out (`SplitLayoutRewritePreproc`) and folded into the constants.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass


@dataclass(frozen=True)
class GraphOptions:
    layout: str = "NHWC"
    prepack: bool = True

    def key(self) -> str:
        return f"layout={self.layout},prepack={self.prepack}"


DEFAULT = GraphOptions()
# How a database matches workloads; tuning and applying must use the same. "anchor-block"
# (one record per conv, shared by its fused variants) merges only 1 of BlazeFace's 75
# tasks (every conv has its own shapes), so the exact match stays.
MODULE_EQUALITY = "structural"


def open_database(db_dir, allow_missing: bool = False):
    """The JSON tuning database in `db_dir` (database_workload.json + database_tuning_record.json)."""
    from pathlib import Path

    from tvm.s_tir import meta_schedule as ms

    db_dir = Path(db_dir)
    if allow_missing:
        db_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(str(db_dir / "database_workload.json"), str(db_dir / "database_tuning_record.json"),
                                    allow_missing=allow_missing, module_equality=MODULE_EQUALITY)


def _cancel_transposes():
    """permute_dims(permute_dims(x, a), b) -> x when b undoes a, else one permute_dims."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Cancel(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", "") != "relax.permute_dims" or not isinstance(call.args[0], relax.Var):
                return call
            inner = self.lookup_binding(call.args[0])
            if not (isinstance(inner, relax.Call) and getattr(inner.op, "name", "") == "relax.permute_dims"):
                return call
            a, b = [int(i) for i in inner.attrs.axes], [int(i) for i in call.attrs.axes]
            axes = [a[i] for i in b]
            if axes == list(range(len(axes))):
                return inner.args[0]
            return relax.op.permute_dims(inner.args[0], axes)

    def transform(mod, _ctx):
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mod[gv] = Cancel(mod).visit_expr(func)
        return mod

    import tvm

    return tvm.transform.module_pass(transform, opt_level=0, name="CancelTransposes")


def count_op(mod, op_name: str) -> int:
    """How many calls of `op_name` the Relax functions of `mod` make (e.g. relax.permute_dims)."""
    from tvm import relax

    found = []

    def visit(e):
        if isinstance(e, relax.Call) and getattr(e.op, "name", "") == op_name:
            found.append(e)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return len(found)


def prepare(mod, target, options: GraphOptions = DEFAULT, database=None):
    """Relax from ONNX -> fused TIR for CPU (what tasks are extracted from), database applied if given.

    Pads are kept out of fusion: a conv whose epilogue also reads a fused (channel) pad
    makes MetaSchedule's design-space generation fail (reverse-compute-at); the model has
    none left (its channel pads are concats), ONNX models from elsewhere may.
    """
    import tvm
    from tvm import relax

    with target, (database or contextlib.nullcontext()):  # the passes read the current target
        passes = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings()]
        if options.layout == "NHWC":
            passes += [relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
                       relax.transform.Normalize(), _cancel_transposes(), relax.transform.DeadCodeElimination(),
                       relax.transform.FoldConstant()]
        passes += [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                   tvm.transform.module_pass(_pads_opaque, opt_level=0, name="PadsOpaque"),
                   relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR()]
        if options.prepack:
            passes.append(relax.transform.AttachAttrLayoutFreeBuffers())
        if database is not None:
            passes.append(relax.transform.MetaScheduleApplyDatabase())
            if options.prepack:
                passes += [relax.transform.SplitLayoutRewritePreproc(), relax.transform.FoldConstant(),
                           relax.transform.DeadCodeElimination()]
        return tvm.transform.Sequential(passes)(mod)


def _pads_opaque(mod, _ctx):
    import tvm

    for gv, func in list(mod.functions.items()):
        if isinstance(func, tvm.tirx.PrimFunc) and gv.name_hint.rstrip("0123456789") == "pad":
            mod[gv] = func.with_attr("op_pattern", 8)  # kOpaque: FuseOps leaves it alone
    return mod
