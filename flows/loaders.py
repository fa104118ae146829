"""Glue between registry artifacts and compress/ calls: load a stage's inputs by artifact id, save its
outputs in the formats the next stage (and the exports) read. No technique logic here.

Formats: datasets are a JSON manifest (packaged MNIST / Fashion-MNIST) or the user's `.npz` itself;
models between stages are a folder with `model.safetensors` + `spec.json` (`compress.teacher.load_teacher`
reads it); quantized variants are compress.export exports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from flows.recipe import QuantVariant, Recipe
from flows.record import artifact_meta, artifact_path
from registry import repository as repo
from registry.session import session_scope


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def path_digest(path: str | Path) -> str:
    """sha256 over a file, or over the sorted files of a folder (names and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ data
def write_dataset_manifest(recipe: Recipe, workdir: Path) -> Path:
    from compress.data import load_dataset

    d = recipe.dataset
    data = load_dataset(d.name, path=d.path)
    pool = len(data.x_train)
    if d.n_train is not None and d.n_train > pool:
        raise ValueError(f"dataset.n_train={d.n_train} exceeds the {pool} training samples of {d.name!r}; "
                         f"use at most {pool}")
    manifest = {"name": d.name, "n_train": d.n_train, "n_test": d.n_test, "seed": recipe.seed, "pool": pool,
                "test": len(data.x_test), "num_classes": data.num_classes, "input_shape": list(data.input_shape)}
    path = workdir / "dataset.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return path


@functools.lru_cache(maxsize=4)
def load_data(dataset_id: int):
    """The full training pool and the (possibly truncated) test split of a dataset artifact."""
    from compress.data import load_dataset

    meta = artifact_meta(dataset_id)
    path = artifact_path(dataset_id) if meta["name"] == "npz" else None
    data = load_dataset(meta["name"], path=path)
    if meta.get("n_test"):
        data.x_test, data.y_test = data.x_test[:meta["n_test"]], data.y_test[:meta["n_test"]]
    return data


def transfer(recipe: Recipe, dataset_id: int):
    from compress.data import transfer_set

    data = load_data(dataset_id)
    n_labelled = recipe.dataset.n_train or len(data.x_train)
    return transfer_set(data, n_labelled, recipe.teacher_data.n_transfer or n_labelled, seed=recipe.seed)


# ---------------------------------------------------------------------------------------- models
def save_checkpoint(model: nn.Module, folder: Path, metadata: dict[str, str] | None = None) -> Path:
    from compress.models import model_spec

    folder.mkdir(parents=True, exist_ok=True)
    spec = model_spec(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"spec": json.dumps(spec), **(metadata or {})})
    (folder / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
    return folder


def load_model(artifact_id: int) -> nn.Module:
    from compress.teacher import load_teacher

    return load_teacher(artifact_path(artifact_id))


def make_teacher(recipe: Recipe, data) -> nn.Module:
    from compress import teacher as t

    cfg = recipe.teacher
    if cfg.source == "packaged":
        model = t.load_packaged_teacher(cfg.name)
    elif cfg.source == "train":
        model = t.train_teacher(data, cfg.train.to_config(recipe.seed), progress="teacher")
    else:
        model = t.load_teacher(cfg.path)
    t.check_teacher(model, data)
    return model


@functools.lru_cache(maxsize=4)
def teacher_test_logits(teacher_id: int, dataset_id: int) -> torch.Tensor:
    from compress.evaluate.classification import predict_logits

    return predict_logits(load_model(teacher_id), load_data(dataset_id).x_test)


def test_metrics(model: nn.Module, dataset_id: int, teacher_id: int | None = None) -> dict[str, float]:
    """accuracy (+ agreement and KL with the teacher) on the test split, and the parameter count."""
    from compress.evaluate.classification import classification_metrics, predict_logits

    data = load_data(dataset_id)
    teacher = teacher_test_logits(teacher_id, dataset_id) if teacher_id is not None else None
    metrics = classification_metrics(predict_logits(model, data.x_test), data.y_test, teacher)
    return {**metrics, "params": float(sum(p.numel() for p in model.parameters()))}


def train_student(recipe: Recipe, dataset_id: int, soft_labels_id: int | None, teacher_id: int | None):
    """KD student (soft labels given) or the from-scratch student; optional scratch baseline metrics."""
    from compress.distill import distill, load_soft_labels, make_student, train_scratch

    data = load_data(dataset_id)
    ts = transfer(recipe, dataset_id)
    spec = recipe.student.model_spec(data.input_shape, data.num_classes)
    cfg = recipe.distill.to_config(recipe.seed)
    student = make_student(spec, seed=recipe.seed)
    if soft_labels_id is not None:
        logits, _ = load_soft_labels(artifact_path(soft_labels_id))
        distill(student, ts.x_transfer, ts.y_transfer, logits, cfg, progress="distill")
    else:
        train_scratch(student, ts.x_labelled, ts.y_labelled, cfg, progress="scratch")
    metrics = test_metrics(student, dataset_id, teacher_id)
    if recipe.distill.enabled and recipe.distill.baseline:
        baseline = make_student(spec, seed=recipe.seed)
        train_scratch(baseline, ts.x_labelled, ts.y_labelled, cfg, progress="baseline")
        metrics.update({f"scratch_{k}": v for k, v in test_metrics(baseline, dataset_id, teacher_id).items()})
    return student, metrics


def prune_model(recipe: Recipe, dataset_id: int, checkpoint_id: int, workdir: Path):
    from compress.evaluate.classification import accuracy, predict_logits
    from compress.prune.report import plot_rounds
    from compress.prune.schedule import iterative_prune

    data = load_data(dataset_id)
    ts = transfer(recipe, dataset_id)
    model = load_model(checkpoint_id)
    p = recipe.prune
    rounds = iterative_prune(model, ts.x_labelled, ts.y_labelled, config=p.to_config(), rounds=p.rounds,
                             epochs=p.epochs, rewind=p.rewind,
                             eval_fn=lambda m: accuracy(predict_logits(m, data.x_test), data.y_test),
                             fit_kwargs={"batch_size": p.batch_size, "lr": p.lr, "seed": recipe.seed})
    plot = plot_rounds({p.technique: rounds}, workdir / "prune.png", title=f"{recipe.name}: {p.technique}")
    return model, rounds, plot


# ------------------------------------------------------------------------------ quantize / export
def _quantized(variant: QuantVariant, checkpoint_id: int) -> nn.Module:
    from compress.quantize import quantize_

    model = load_model(checkpoint_id)
    config = variant.to_config()
    return quantize_(model, config) if config is not None else model


def quantized_export(recipe: Recipe, variant: QuantVariant, checkpoint_id: int, dest: Path,
                     metrics: dict[str, float] | None = None, lineage: list[dict[str, Any]] | None = None,
                     overwrite: bool = False) -> Path:
    from compress.export import export_model

    model = _quantized(variant, checkpoint_id)
    meta = {"variant": variant.name, "technique": variant.technique,
            "quantization": json.dumps(variant.options, sort_keys=True)}
    if metrics is not None:  # the shipped export (not the intermediate checkpoint) names its recipe
        meta |= {"recipe": recipe.name, "recipe_hash": recipe.build_hash()}
    reproduce = (f"shrinkwrap run recipe.yaml  # the recipe named {recipe.name!r} (build hash "
                 f"{recipe.build_hash()[:16]}); its JSON is stored on the registry run")
    result = export_model(model, dest, metadata=meta, metrics=metrics or {}, lineage=lineage or [],
                          reproduce=reproduce, sparse=recipe.export.sparse and variant.technique == "none",
                          overwrite=overwrite)
    return Path(result.path)


def evaluate_export(recipe: Recipe, path: Path, dataset_id: int, teacher_id: int | None) -> dict[str, float]:
    from compress.evaluate.system import system_metrics
    from compress.export import load_export

    data = load_data(dataset_id)
    model = load_export(path)
    model = model[0] if isinstance(model, tuple) else model
    metrics = test_metrics(model, dataset_id, teacher_id)
    e = recipe.evaluate
    example = data.x_test[:e.latency_batch_size]
    system = system_metrics(model, example, iters=e.latency_iters, warmup=e.warmup, path=path)
    metrics.update({k: float(v) for k, v in system.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def final_export(recipe: Recipe, variant: QuantVariant, pruned_id: int, *, metrics: dict[str, float],
                 lineage: dict[str, int | None]) -> Path:
    """The shipped export under `export_dir()/<model>/<variant>-<recipe hash>`: the same quantization of
    the pruned checkpoint as the evaluated one (deterministic), now with metrics and lineage in its card."""
    from flows.record import input_shas
    from registry.config import export_dir

    dest = export_dir() / recipe.name / f"{variant.name}-{recipe.build_hash()[:8]}"
    shas = input_shas(lineage)
    steps = [{"step": role, "artifact": aid, "sha256": shas[role][:16]} for role, aid in lineage.items()
             if aid is not None]
    steps.append({"step": f"quantize[{variant.name}]", "technique": variant.technique})
    if recipe.task == "causal_lm":
        from flows import llm_loaders

        return llm_loaders.quantized_export(recipe, variant, pruned_id, dest, metrics=metrics, lineage=steps,
                                            overwrite=True)
    return quantized_export(recipe, variant, pruned_id, dest, metrics=metrics, lineage=steps, overwrite=True)


def register_versions(recipe: Recipe, run_id: int, export_ids: dict[str, int],
                      metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One version per variant; the best variant (by `select_by`) that passes the gates gets the alias."""
    from registry.repository.gates import Gate

    reg = recipe.promote
    gates = [Gate(**g.model_dump()) for g in reg.gates]
    versions: dict[str, int] = {}
    failures: dict[str, list[str]] = {}
    with session_scope() as s:
        repo.get_or_create_model(s, name=recipe.name, description=recipe.description)
        rows = {}
        for name, aid in export_ids.items():
            row = repo.create_version(s, model_name=recipe.name, artifact_id=aid, run_id=run_id,
                                      description=f"variant {name} of recipe {recipe.name} ({recipe.build_hash()[:12]})")
            if metrics.get(name):
                repo.log_metrics(s, metrics=metrics[name], version_id=row.id, run_id=run_id, stage="register")
            rows[name], versions[name] = row, row.version
        for name, row in rows.items():
            failures[name] = repo.evaluate_gates(s, version=row, gates=gates)
        passing = [n for n in rows if not failures[n]]
        promoted = None
        if reg.alias and passing:
            sign = 1.0 if reg.prefer == "max" else -1.0
            promoted = max(passing, key=lambda n: sign * metrics.get(n, {}).get(reg.select_by, -sign * float("inf")))
            repo.set_alias(s, model_name=recipe.name, version=versions[promoted], alias=reg.alias, gates=gates)
    return {"model": recipe.name, "versions": versions, "gate_failures": failures,
            "promoted": {"alias": reg.alias, "variant": promoted, "version": versions.get(promoted)} if promoted else None}
