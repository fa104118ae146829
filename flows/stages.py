"""One Prefect task per stage of `compress_model`. Tasks pass registry ids, never tensors.

Each task: load inputs by artifact id, call compress/, register outputs and metrics (flows/record.py
does the StageRun and cache-key bookkeeping), return {"artifacts": {role: id}, ...}. Technique logic
lives in compress/; model loading helpers live in flows/loaders.py.

Retries are on the stages that do I/O only (dataset, export, register); compute stages fail fast and
resume through the cache. Every stage has a timeout (`STAGE_TIMEOUTS`, seconds).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows import llm_loaders, loaders
from flows.recipe import QuantVariant, Recipe
from flows.record import artifact_path, run_stage

STAGE_TIMEOUTS = {"dataset": 600, "teacher": 3600, "teacher_data": 1800, "distill": 7200, "prune": 7200,
                  "quantize": 1800, "evaluate": 1800, "export": 900, "register": 300}


def _task(name: str, *, retries: int = 0):
    return task(name=name, retries=retries, retry_delay_seconds=2, timeout_seconds=STAGE_TIMEOUTS[name],
                cache_policy=NO_CACHE, persist_result=False)


def _loaders(recipe: Recipe):
    return llm_loaders if recipe.task == "causal_lm" else loaders


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@_task("dataset", retries=2)
def dataset_stage(run_id: int, recipe: Recipe) -> dict[str, Any]:
    params = {**recipe.dataset.model_dump(), "seed": recipe.seed}
    if recipe.dataset.path:  # a user file: its content, not its name, decides reuse
        params["path"], params["source_sha256"] = None, _sha256_file(recipe.dataset.path)

    if recipe.task == "causal_lm":
        params = {**recipe.llm.model_dump(include={"corpus", "n_prompts", "n_heldout"}), "seed": recipe.seed}

    def body(ctx):
        if recipe.task == "causal_lm":
            ctx.register("dataset", kind="dataset", path=llm_loaders.dataset_manifest(recipe, ctx.workdir),
                         format="corpus+json", metadata={"task": "causal_lm", "corpus": recipe.llm.corpus})
            return {}
        manifest = loaders.write_dataset_manifest(recipe, ctx.workdir)
        source = recipe.dataset.path if recipe.dataset.name == "npz" else manifest
        fmt = "npz" if recipe.dataset.name == "npz" else "dataset-manifest+json"
        ctx.register("dataset", kind="dataset", path=source, format=fmt, metadata=loaders.read_json(manifest))
        return {"num_classes": loaders.read_json(manifest)["num_classes"]}

    return run_stage("dataset", run_id=run_id, params=params, inputs={}, body=body)


@_task("teacher")
def teacher_stage(run_id: int, recipe: Recipe, dataset_id: int) -> dict[str, Any]:
    params = {**recipe.teacher.model_dump(), "seed": recipe.seed}
    if recipe.teacher.source == "path":
        params["path_sha256"] = loaders.path_digest(recipe.teacher.path)

    if recipe.task == "causal_lm":
        params = recipe.llm.model_dump(include={"teacher", "dtype"})

    def body(ctx):
        if recipe.task == "causal_lm":
            path = llm_loaders.teacher_manifest(recipe, ctx.workdir)
            ctx.register("teacher", kind="teacher", path=path, format="hf-source+json", parents=[dataset_id],
                         metadata=loaders.read_json(path))
            return {}
        data = loaders.load_data(dataset_id)
        model = loaders.make_teacher(recipe, data)
        metrics = loaders.test_metrics(model, dataset_id)
        path = loaders.save_checkpoint(model, ctx.workdir / "teacher", metadata={"source": recipe.teacher.source})
        ctx.register("teacher", kind="teacher", path=path, format="safetensors+spec", parents=[dataset_id],
                     metrics=metrics)
        return {"metrics": metrics}

    return run_stage("teacher", run_id=run_id, params=params, inputs={"dataset": dataset_id}, body=body)


@_task("teacher_data")
def teacher_data_stage(run_id: int, recipe: Recipe, dataset_id: int, teacher_id: int) -> dict[str, Any]:
    from compress.distill import save_soft_labels, soft_labels

    params = {**recipe.teacher_data.model_dump(), "n_train": recipe.dataset.n_train, "seed": recipe.seed}

    if recipe.task == "causal_lm":
        params = {**recipe.llm.model_dump(), "seed": recipe.seed}

    def body(ctx):
        if recipe.task == "causal_lm":
            path = llm_loaders.generate(recipe, dataset_id, teacher_id, ctx.workdir)
            ctx.register("soft_labels", kind="dataset", path=path, format="jsonl", parents=[dataset_id, teacher_id])
            return {}
        ts = loaders.transfer(recipe, dataset_id)
        logits = soft_labels(loaders.load_model(teacher_id), ts.x_transfer, batch_size=recipe.teacher_data.batch_size)
        path = save_soft_labels(ctx.workdir / "soft_labels.safetensors", logits,
                                metadata={"n_transfer": str(len(ts.x_transfer)), "n_labelled": str(len(ts.x_labelled))})
        ctx.register("soft_labels", kind="soft-labels", path=path, format="safetensors",
                     parents=[dataset_id, teacher_id], metadata={"rows": int(logits.shape[0])})
        return {"rows": int(logits.shape[0])}

    return run_stage("teacher_data", run_id=run_id, params=params,
                     inputs={"dataset": dataset_id, "teacher": teacher_id}, body=body)


@_task("distill")
def distill_stage(run_id: int, recipe: Recipe, dataset_id: int, soft_labels_id: int | None,
                  teacher_id: int | None) -> dict[str, Any]:
    params = {**recipe.distill.model_dump(), "student": recipe.student.model_dump(), "seed": recipe.seed,
              "n_train": recipe.dataset.n_train, "n_transfer": recipe.teacher_data.n_transfer}

    if recipe.task == "causal_lm":
        params = {**recipe.llm.model_dump(), "seed": recipe.seed}

    def body(ctx):
        if recipe.task == "causal_lm":
            path, metrics = llm_loaders.train_student(recipe, dataset_id, soft_labels_id, teacher_id, ctx.workdir)
            fmt = "hf"
        else:
            student, metrics = loaders.train_student(recipe, dataset_id, soft_labels_id, teacher_id)
            path, fmt = loaders.save_checkpoint(student, ctx.workdir / "student"), "safetensors+spec"
        ctx.register("checkpoint", kind="checkpoint", path=path, format=fmt, parents=[soft_labels_id or dataset_id],
                     metrics=metrics)
        return {"metrics": metrics}

    return run_stage("distill", run_id=run_id, params=params,
                     inputs={"dataset": dataset_id, "soft_labels": soft_labels_id, "teacher": teacher_id}, body=body)


@_task("prune")
def prune_stage(run_id: int, recipe: Recipe, dataset_id: int, checkpoint_id: int,
                teacher_id: int | None) -> dict[str, Any]:
    params = {**recipe.prune.model_dump(), "seed": recipe.seed, "n_train": recipe.dataset.n_train}

    def body(ctx):
        if recipe.task == "causal_lm":
            path, metrics = llm_loaders.prune_model(recipe, dataset_id, checkpoint_id, teacher_id, ctx.workdir)
            ctx.register("checkpoint", kind="checkpoint", path=path, format="hf", parents=[checkpoint_id], metrics=metrics)
            return {"metrics": metrics}
        model, rounds, plot = loaders.prune_model(recipe, dataset_id, checkpoint_id, ctx.workdir)
        for r in rounds:
            ctx.log({"retained_fraction": r.retained_fraction, **r.metrics}, step=r.round)
        metrics = {**loaders.test_metrics(model, dataset_id, teacher_id),
                   "retained_fraction": rounds[-1].retained_fraction}
        path = loaders.save_checkpoint(model, ctx.workdir / "pruned")
        pid = ctx.register("checkpoint", kind="checkpoint", path=path, format="safetensors+spec",
                           parents=[checkpoint_id], metrics=metrics)
        if plot is not None:
            ctx.register("plot", kind="plot", path=plot, format="png", parents=[pid])
        return {"metrics": metrics, "rounds": [{"round": r.round, "retained_fraction": r.retained_fraction,
                                                **r.metrics} for r in rounds]}

    return run_stage("prune", run_id=run_id, params=params, inputs={"dataset": dataset_id, "checkpoint": checkpoint_id},
                     body=body)


@_task("quantize")
def quantize_stage(run_id: int, recipe: Recipe, variant: QuantVariant, checkpoint_id: int) -> dict[str, Any]:
    params = {**variant.model_dump(), "sparse": recipe.export.sparse}

    def body(ctx):
        path = _loaders(recipe).quantized_export(recipe, variant, checkpoint_id, ctx.workdir / variant.name)
        ctx.register("checkpoint", kind="checkpoint", path=path, format=f"export-{variant.technique}",
                     parents=[checkpoint_id], metadata={"variant": variant.name, "technique": variant.technique})
        return {}

    return run_stage(f"quantize[{variant.name}]", stage_key="quantize", run_id=run_id, params=params,
                     inputs={"checkpoint": checkpoint_id}, body=body)


@_task("evaluate")
def evaluate_stage(run_id: int, recipe: Recipe, variant: QuantVariant, quantized: dict[str, Any], dataset_id: int,
                   teacher_id: int | None) -> dict[str, Any]:
    checkpoint_id = quantized["artifacts"]["checkpoint"]
    params = recipe.evaluate.model_dump() | {"n_test": recipe.dataset.n_test}

    def body(ctx):
        metrics = _loaders(recipe).evaluate_export(recipe, artifact_path(checkpoint_id, ctx.workdir), dataset_id,
                                                   teacher_id)
        ctx.log(metrics)
        return {"metrics": metrics}

    return run_stage(f"evaluate[{variant.name}]", stage_key="evaluate", run_id=run_id, params=params,
                     inputs={"checkpoint": checkpoint_id, "dataset": dataset_id, "teacher": teacher_id}, body=body)


@_task("export", retries=2)
def export_stage(run_id: int, recipe: Recipe, variant: QuantVariant, quantized: dict[str, Any],
                 evaluated: dict[str, Any] | None, pruned_id: int, lineage: dict[str, int | None]) -> dict[str, Any]:
    checkpoint_id = quantized["artifacts"]["checkpoint"]
    metrics = (evaluated or {}).get("metrics", {})
    params = {"variant": variant.model_dump(), "metrics": metrics, "build_hash": recipe.build_hash()}

    def body(ctx):
        dest = loaders.final_export(recipe, variant, pruned_id, metrics=metrics, lineage=lineage)
        ctx.register("export", kind="export", path=dest, format=f"export-{variant.technique}", parents=[checkpoint_id],
                     metadata={"variant": variant.name, "technique": variant.technique, "path": str(dest)},
                     metrics=metrics)
        return {"path": str(dest), "metrics": metrics}

    return run_stage(f"export[{variant.name}]", stage_key="export", run_id=run_id, params=params,
                     inputs={"checkpoint": checkpoint_id, "pruned": pruned_id}, body=body)


@_task("register", retries=2)
def register_stage(run_id: int, recipe: Recipe, exports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    export_ids = {name: out["artifacts"]["export"] for name, out in exports.items()}
    params = {**recipe.promote.model_dump(), "model": recipe.name, "description": recipe.description}

    def body(ctx):
        return loaders.register_versions(recipe, run_id, export_ids, {n: o.get("metrics", {}) for n, o in exports.items()})

    return run_stage("register", run_id=run_id, params=params, inputs=export_ids, body=body)


def export_paths(exports: dict[str, dict[str, Any]]) -> dict[str, Path]:
    return {name: Path(out["path"]) for name, out in exports.items() if out.get("path")}
