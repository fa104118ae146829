"""One Prefect task per stage of `compress_model`. Tasks pass registry ids, never tensors.

Every stage is the same few lines for every task: look the task up (`compress.tasks.get_task`), make its
input artifacts local paths, call the task's method for the stage, record its `Output` (flows/record.py
does the StageRun and cache-key bookkeeping) and return {"artifacts": {role: id}, ...}. No stage branches
on a task or technique name; the cache key hashes the modules the task (and technique) declare.

Retries are on the stages that do I/O only (dataset, export, register); compute stages fail fast and
resume through the cache. Every stage has a timeout (`STAGE_TIMEOUTS`, seconds).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from compress.evaluate.timing import host_context, host_metrics
from compress.tasks import Output, get_task
from compress.techniques import quantizer
from flows.record import StageContext, artifact_path, input_shas, run_stage
from registry import repository as repo
from registry.config import export_dir
from registry.session import session_scope

STAGE_TIMEOUTS = {"dataset": 600, "teacher": 3600, "teacher_data": 1800, "distill": 7200, "prune": 7200,
                  "quantize": 1800, "evaluate": 1800, "export": 900, "register": 300}


def _task(name: str, *, retries: int = 0):
    return task(name=name, retries=retries, retry_delay_seconds=2, timeout_seconds=STAGE_TIMEOUTS[name],
                cache_policy=NO_CACHE, persist_result=False)


@functools.cache
def _inputs_dir() -> Path:
    """One folder per process where folder artifacts are materialised once and reused by later stages."""
    return Path(tempfile.mkdtemp(prefix="shrinkwrap-inputs-"))


def local(artifact_id: int | None) -> Path | None:
    """The artifact as a local path (None stays None)."""
    return artifact_path(artifact_id, _inputs_dir()) if artifact_id is not None else None


def record(ctx: StageContext, role: str, out: Output, parents: list[int | None]) -> int:
    """Store a task's Output as the stage's `role` artifact, with its metrics, steps and plots."""
    aid = ctx.register(role, kind=out.kind, path=out.path, format=out.format, parents=parents,
                       metadata=out.metadata or None, metrics=out.metrics or None)
    for step, metrics in out.steps:
        ctx.log(metrics, step=step)
    for plot in out.plots:
        ctx.register("plot", kind="plot", path=plot, format="png", parents=[aid])
    return aid


def _run(stage: str, recipe, *, run_id: int, inputs: dict[str, int | None], body, name: str | None = None,
         params: dict[str, Any] | None = None, technique: str | None = None) -> dict[str, Any]:
    t = get_task(recipe.task)
    sources = t.sources[stage] + (quantizer(technique).code_sources() if technique else ())
    params = {"task": t.name, **t.stage_params(stage, recipe), **(params or {})}
    return run_stage(name or stage, stage_key=stage, run_id=run_id, params=params, inputs=inputs, body=body,
                     sources=sources)


@_task("dataset", retries=2)
def dataset_stage(run_id: int, recipe) -> dict[str, Any]:
    def body(ctx):
        out = get_task(recipe.task).dataset(recipe, ctx.workdir)
        record(ctx, "dataset", out, [])
        return out.extra

    return _run("dataset", recipe, run_id=run_id, inputs={}, body=body)


@_task("teacher")
def teacher_stage(run_id: int, recipe, dataset_id: int) -> dict[str, Any]:
    def body(ctx):
        out = get_task(recipe.task).teacher(recipe, local(dataset_id), ctx.workdir)
        record(ctx, "teacher", out, [dataset_id])
        return out.extra

    return _run("teacher", recipe, run_id=run_id, inputs={"dataset": dataset_id}, body=body)


@_task("teacher_data")
def teacher_data_stage(run_id: int, recipe, dataset_id: int, teacher_id: int) -> dict[str, Any]:
    def body(ctx):
        out = get_task(recipe.task).teacher_data(recipe, local(dataset_id), local(teacher_id), ctx.workdir)
        record(ctx, "soft_labels", out, [dataset_id, teacher_id])
        return out.extra

    return _run("teacher_data", recipe, run_id=run_id, inputs={"dataset": dataset_id, "teacher": teacher_id},
                body=body)


@_task("distill")
def distill_stage(run_id: int, recipe, dataset_id: int, soft_labels_id: int | None,
                  teacher_id: int | None) -> dict[str, Any]:
    def body(ctx):
        out = get_task(recipe.task).distill(recipe, local(dataset_id), local(soft_labels_id), local(teacher_id),
                                            ctx.workdir)
        record(ctx, "checkpoint", out, [soft_labels_id or dataset_id])
        return out.extra

    return _run("distill", recipe, run_id=run_id, body=body,
                inputs={"dataset": dataset_id, "soft_labels": soft_labels_id, "teacher": teacher_id})


@_task("prune")
def prune_stage(run_id: int, recipe, dataset_id: int, checkpoint_id: int, teacher_id: int | None) -> dict[str, Any]:
    def body(ctx):
        out = get_task(recipe.task).prune(recipe, local(dataset_id), local(checkpoint_id), local(teacher_id),
                                          ctx.workdir)
        record(ctx, "checkpoint", out, [checkpoint_id])
        return out.extra

    return _run("prune", recipe, run_id=run_id, body=body, inputs={"dataset": dataset_id, "checkpoint": checkpoint_id})


@_task("quantize")
def quantize_stage(run_id: int, recipe, variant, checkpoint_id: int, dataset_id: int) -> dict[str, Any]:
    calibrated = quantizer(variant.technique).needs_calibration

    def body(ctx):
        out = get_task(recipe.task).quantize(recipe, variant, local(checkpoint_id), local(dataset_id), ctx.workdir)
        record(ctx, "checkpoint", out, [checkpoint_id])
        return out.extra

    inputs = {"checkpoint": checkpoint_id, **({"dataset": dataset_id} if calibrated else {})}
    return _run("quantize", recipe, name=f"quantize[{variant.name}]", run_id=run_id, inputs=inputs, body=body,
                params={"variant": variant.model_dump(mode="json")}, technique=variant.technique)


@_task("evaluate")
def evaluate_stage(run_id: int, recipe, variant, quantized: dict[str, Any], dataset_id: int,
                   teacher_id: int | None) -> dict[str, Any]:
    checkpoint_id = quantized["artifacts"]["checkpoint"]

    def body(ctx):
        host = host_context()  # where and under what load it was measured: stored beside the numbers
        metrics = get_task(recipe.task).evaluate(recipe, artifact_path(checkpoint_id, ctx.workdir), local(dataset_id),
                                                 local(teacher_id))
        metrics = {**host_metrics(host), **metrics}
        ctx.log(metrics)
        return {"metrics": metrics, "host": {k: host[k] for k in ("fingerprint", "cpu_model", "torch") if k in host}}

    return _run("evaluate", recipe, name=f"evaluate[{variant.name}]", run_id=run_id, body=body,
                inputs={"checkpoint": checkpoint_id, "dataset": dataset_id, "teacher": teacher_id},
                technique=variant.technique)


def export_path(recipe, variant) -> Path:
    """Where a variant's shipped export goes: `export_dir()/<model>/<variant>-<build hash>`."""
    return export_dir() / recipe.name / f"{variant.name}-{recipe.build_hash()[:8]}"


@_task("export", retries=2)
def export_stage(run_id: int, recipe, variant, quantized: dict[str, Any], evaluated: dict[str, Any] | None,
                 pruned_id: int, lineage: dict[str, int | None]) -> dict[str, Any]:
    checkpoint_id = quantized["artifacts"]["checkpoint"]
    metrics = (evaluated or {}).get("metrics", {})

    def body(ctx):
        shas = input_shas(lineage)
        steps = [{"step": role, "artifact": aid, "sha256": shas[role][:16]} for role, aid in lineage.items()
                 if aid is not None]
        steps.append({"step": f"quantize[{variant.name}]", "technique": variant.technique})
        dest = get_task(recipe.task).export(recipe, variant, local(pruned_id), export_path(recipe, variant),
                                            metrics=metrics, lineage=steps, dataset=local(lineage.get("dataset")))
        host = (evaluated or {}).get("host") or {}
        ctx.register("export", kind="export", path=dest, format=f"export-{variant.technique}", parents=[checkpoint_id],
                     metadata={"variant": variant.name, "technique": variant.technique, "path": str(dest),
                               **({"measured_on": host} if host else {})}, metrics=metrics)
        return {"path": str(dest), "metrics": metrics}

    return _run("export", recipe, name=f"export[{variant.name}]", run_id=run_id, body=body,
                inputs={"checkpoint": checkpoint_id, "pruned": pruned_id}, technique=variant.technique,
                params={"variant": variant.model_dump(mode="json"), "metrics": metrics,
                        "build_hash": recipe.build_hash()})


@_task("register", retries=2)
def register_stage(run_id: int, recipe, exports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    export_ids = {name: out["artifacts"]["export"] for name, out in exports.items()}
    promote = recipe.promote

    def body(ctx):
        with session_scope() as s:
            return repo.register_variants(
                s, model_name=recipe.name, description=recipe.description, run_id=run_id, exports=export_ids,
                metrics={n: o.get("metrics", {}) for n, o in exports.items()}, gates=promote.gates,
                alias=promote.alias, select_by=promote.select_by, prefer=promote.prefer,
                build_hash=recipe.build_hash())

    params = {**promote.model_dump(mode="json"), "model": recipe.name, "description": recipe.description}
    return run_stage("register", run_id=run_id, params=params, inputs=export_ids, body=body, sources=())


def export_paths(exports: dict[str, dict[str, Any]]) -> dict[str, Path]:
    return {name: Path(out["path"]) for name, out in exports.items() if out.get("path")}
