"""The image-classification task (`task: classification`): MNIST, Fashion-MNIST or a user's .npz; a
packaged, trained or exported CNN/MLP teacher; soft labels on a transfer set; a zoo student distilled
on them (Hinton et al. 2015); SAP / magnitude pruning rounds with fine-tuning (Diao et al. 2023); any
registered quantization technique; plain-layout safetensors exports.

Artifacts between stages: the dataset is a folder with `dataset.json` (and the user's `data.npz`);
models are folders with `model.safetensors` + `spec.json`; soft labels are one safetensors file;
variants are compress.export exports.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from compress.tasks.base import Output, register_task, section_enabled
from compress.tasks.image_classification_sections import ClassificationSections

DATASET_JSON = "dataset.json"
NPZ = "data.npz"
_SHARED = ("compress.export", "compress.evaluate.system", "compress.techniques", "compress.tasks.base",
           "compress.tasks.image_classification", "compress.tasks.image_classification_sections")


def path_digest(path: str | Path) -> str:
    """sha256 over a file, or over the sorted files of a folder (names and bytes)."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ data
@functools.lru_cache(maxsize=4)
def load_data(dataset: Path):
    """The full training pool and the (possibly truncated) test split of a dataset artifact folder."""
    from compress.data import load_dataset

    meta = json.loads((Path(dataset) / DATASET_JSON).read_text())
    npz = Path(dataset) / NPZ
    data = load_dataset(meta["name"], path=npz if npz.is_file() else None)
    if meta.get("n_test"):
        data.x_test, data.y_test = data.x_test[:meta["n_test"]], data.y_test[:meta["n_test"]]
    return data


def transfer(recipe, dataset: Path):
    from compress.data import transfer_set

    data = load_data(dataset)
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


def load_model(path: Path) -> nn.Module:
    from compress.teacher import load_teacher

    return load_teacher(path)


TEST_LOGITS = "test_logits.safetensors"  # the teacher's logits on the test split, kept in its artifact


@functools.lru_cache(maxsize=4)
def teacher_test_logits(teacher: Path, dataset: Path) -> torch.Tensor:
    """The teacher's test-split logits: stored with the teacher by its stage (computed once per run)."""
    from safetensors.torch import load_file

    from compress.evaluate.classification import predict_logits

    x_test = load_data(dataset).x_test
    stored = Path(teacher) / TEST_LOGITS
    if stored.is_file():
        logits = load_file(stored)["logits"]
        if logits.shape[0] == len(x_test):
            return logits
    return predict_logits(load_model(teacher), x_test)


def test_metrics(model: nn.Module, dataset: Path, teacher: Path | None = None, *,
                 logits: torch.Tensor | None = None) -> dict[str, float]:
    """accuracy (+ agreement and KL with the teacher) on the test split, and the size of the model;
    `logits`: the model's test logits when the caller already has them."""
    from compress.evaluate.classification import classification_metrics, predict_logits
    from compress.evaluate.system import model_size

    data = load_data(dataset)
    reference = teacher_test_logits(teacher, dataset) if teacher is not None else None
    logits = predict_logits(model, data.x_test) if logits is None else logits
    metrics = classification_metrics(logits, data.y_test, reference)
    size = model_size(model)
    return {**metrics, "params": float(size.params), "nonzero_params": float(size.nonzero)}


class ImageClassification:
    name = "classification"
    sections = ClassificationSections
    path_fields = ("dataset.path", "teacher.path")  # resolved against the recipe file's folder
    sources = {
        "dataset": ("compress.data", "compress.assets", *_SHARED),
        "teacher": ("compress.teacher", "compress.models", "compress.train", "compress.evaluate.classification",
                    *_SHARED),
        "teacher_data": ("compress.distill.soft_labels", *_SHARED),
        "distill": ("compress.distill", "compress.models", "compress.train", "compress.evaluate.classification",
                    *_SHARED),
        "prune": ("compress.prune", "compress.train", "compress.evaluate.classification", *_SHARED),
        "quantize": _SHARED,
        "evaluate": ("compress.evaluate.classification", *_SHARED),
        "export": _SHARED,
    }

    # ----------------------------------------------------------------------------- parameters
    def stage_params(self, stage: str, recipe) -> dict[str, Any]:
        seed = {"seed": recipe.seed}
        if stage == "dataset":
            params = {**recipe.dataset.model_dump(), **seed}
            if recipe.dataset.path:  # a user file: its content, not its name, decides reuse
                params["path"], params["source_sha256"] = None, path_digest(recipe.dataset.path)
            return params
        if stage == "teacher":
            params = {**recipe.teacher.model_dump(), **seed}
            if recipe.teacher.source == "path":
                params["path_sha256"] = path_digest(recipe.teacher.path)
            return params
        if stage == "teacher_data":
            return {**recipe.teacher_data.model_dump(), "n_train": recipe.dataset.n_train, **seed}
        if stage == "distill":
            return {**recipe.distill.model_dump(), "student": recipe.student.model_dump(), **seed,
                    "n_train": recipe.dataset.n_train, "n_transfer": recipe.teacher_data.n_transfer}
        if stage == "prune":
            return {**recipe.prune.model_dump(), **seed, "n_train": recipe.dataset.n_train}
        if stage in ("quantize", "export"):
            return {"sparse": recipe.export.sparse}
        if stage == "evaluate":
            return {**recipe.evaluate.model_dump(), "n_test": recipe.dataset.n_test}
        raise KeyError(f"unknown stage {stage!r}")

    def enabled(self, stage: str, recipe) -> bool:
        return stage == "distill" or section_enabled(recipe, stage)

    # --------------------------------------------------------------------------------- stages
    def dataset(self, recipe, workdir: Path) -> Output:
        from compress.data import load_dataset

        d = recipe.dataset
        data = load_dataset(d.name, path=d.path)
        pool = len(data.x_train)
        if d.n_train is not None and d.n_train > pool:
            raise ValueError(f"dataset.n_train={d.n_train} exceeds the {pool} training samples of {d.name!r}; "
                             f"use at most {pool}")
        manifest = {"name": d.name, "n_train": d.n_train, "n_test": d.n_test, "seed": recipe.seed, "pool": pool,
                    "test": len(data.x_test), "num_classes": data.num_classes,
                    "input_shape": list(data.input_shape)}
        folder = workdir / "dataset"
        folder.mkdir()
        (folder / DATASET_JSON).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if d.path:
            shutil.copyfile(d.path, folder / NPZ)
        return Output(folder, "dataset-folder", kind="dataset", metadata=manifest,
                      extra={"num_classes": data.num_classes})

    def teacher(self, recipe, dataset: Path, workdir: Path) -> Output:
        from compress import teacher as t

        cfg, data = recipe.teacher, load_data(dataset)
        if cfg.source == "packaged":
            model = t.load_packaged_teacher(cfg.name)
        elif cfg.source == "train":
            model = t.train_teacher(data, cfg.train.to_config(recipe.seed), progress="teacher")
        else:
            model = t.load_teacher(cfg.path)
        t.check_teacher(model, data)
        from compress.evaluate.classification import predict_logits

        logits = predict_logits(model, data.x_test)
        metrics = test_metrics(model, dataset, logits=logits)
        path = save_checkpoint(model, workdir / "teacher", metadata={"source": cfg.source})
        save_file({"logits": logits.contiguous()}, str(path / TEST_LOGITS))  # distill/prune/evaluate reuse them
        return Output(path, "safetensors+spec", kind="teacher", metrics=metrics, extra={"metrics": metrics})

    def teacher_data(self, recipe, dataset: Path, teacher: Path, workdir: Path) -> Output:
        from compress.distill import save_soft_labels, soft_labels

        ts = transfer(recipe, dataset)
        logits = soft_labels(load_model(teacher), ts.x_transfer, batch_size=recipe.teacher_data.batch_size)
        path = save_soft_labels(workdir / "soft_labels.safetensors", logits,
                                metadata={"n_transfer": str(len(ts.x_transfer)), "n_labelled": str(len(ts.x_labelled))})
        rows = int(logits.shape[0])
        return Output(path, "safetensors", kind="soft-labels", metadata={"rows": rows}, extra={"rows": rows})

    def distill(self, recipe, dataset: Path, teacher_data: Path | None, teacher: Path | None,
                workdir: Path) -> Output:
        """KD student (soft labels given) or the from-scratch student; optional scratch baseline metrics."""
        from compress.distill import distill, load_soft_labels, make_student, train_scratch

        data, ts = load_data(dataset), transfer(recipe, dataset)
        spec = recipe.student.model_spec(data.input_shape, data.num_classes)
        cfg = recipe.distill.to_config(recipe.seed)
        student = make_student(spec, seed=recipe.seed)
        if teacher_data is not None and recipe.distill.enabled:
            logits, _ = load_soft_labels(teacher_data)
            distill(student, ts.x_transfer, ts.y_transfer, logits, cfg, progress="distill")
        else:
            train_scratch(student, ts.x_labelled, ts.y_labelled, cfg, progress="scratch")
        metrics = test_metrics(student, dataset, teacher)
        if recipe.distill.enabled and recipe.distill.baseline:
            baseline = make_student(spec, seed=recipe.seed)
            train_scratch(baseline, ts.x_labelled, ts.y_labelled, cfg, progress="baseline")
            metrics.update({f"scratch_{k}": v for k, v in test_metrics(baseline, dataset, teacher).items()})
        return Output(save_checkpoint(student, workdir / "student"), "safetensors+spec", metrics=metrics,
                      extra={"metrics": metrics})

    def prune(self, recipe, dataset: Path, checkpoint: Path, teacher: Path | None, workdir: Path) -> Output:
        from compress.evaluate.classification import accuracy, predict_logits
        from compress.prune.report import plot_rounds
        from compress.prune.schedule import iterative_prune

        data, ts, p = load_data(dataset), transfer(recipe, dataset), recipe.prune
        model = load_model(checkpoint)
        rounds = iterative_prune(model, ts.x_labelled, ts.y_labelled, config=p.to_config(), rounds=p.rounds,
                                 epochs=p.epochs, rewind=p.rewind,
                                 eval_fn=lambda m: accuracy(predict_logits(m, data.x_test), data.y_test),
                                 fit_kwargs={"batch_size": p.batch_size, "lr": p.lr, "seed": recipe.seed})
        plot = plot_rounds({p.technique: rounds}, workdir / "prune.png", title=f"{recipe.name}: {p.technique}")
        metrics = {**test_metrics(model, dataset, teacher), "retained_fraction": rounds[-1].retained_fraction}
        table = [{"round": r.round, "retained_fraction": r.retained_fraction, **r.metrics} for r in rounds]
        return Output(save_checkpoint(model, workdir / "pruned"), "safetensors+spec", metrics=metrics,
                      steps=[(r.round, {"retained_fraction": r.retained_fraction, **r.metrics}) for r in rounds],
                      plots=[plot] if plot is not None else [], extra={"metrics": metrics, "rounds": table})

    def _write_export(self, recipe, variant, checkpoint: Path, dest: Path, dataset: Path | None, *,
                      metrics=None, lineage=None, overwrite=False) -> Path:
        from compress.export import export_model
        from compress.techniques import quantized_layers, quantizer

        technique = quantizer(variant.technique)
        calibration = None
        if technique.needs_calibration:
            if dataset is None:
                raise ValueError(f"technique {technique.name!r} needs calibration data; pass the dataset")
            calibration = [transfer(recipe, dataset).x_labelled[:512]]
        model = technique.apply(load_model(checkpoint), variant.to_config(), calibration)
        meta = {"variant": variant.name, "technique": variant.technique,
                "quantization": json.dumps(variant.options_dict(), sort_keys=True)}
        if metrics is not None:  # the shipped export (not the intermediate checkpoint) names its recipe
            meta |= {"recipe": recipe.name, "recipe_hash": recipe.build_hash()}
        reproduce = (f"shrinkwrap run recipe.yaml  # the recipe named {recipe.name!r} (build hash "
                     f"{recipe.build_hash()[:16]}); its JSON is stored on the registry run")
        sparse = recipe.export.sparse and not quantized_layers(model)  # sparse stores float weights only
        result = export_model(model, dest, metadata=meta, metrics=metrics or {}, lineage=lineage or [],
                              reproduce=reproduce, sparse=sparse, overwrite=overwrite)
        return Path(result.path)

    def quantize(self, recipe, variant, checkpoint: Path, dataset: Path, workdir: Path) -> Output:
        path = self._write_export(recipe, variant, checkpoint, workdir / variant.name, dataset)
        return Output(path, f"export-{variant.technique}", metadata={"variant": variant.name,
                                                                     "technique": variant.technique})

    def evaluate(self, recipe, export: Path, dataset: Path, teacher: Path | None) -> dict[str, float]:
        from compress.evaluate.system import system_metrics
        from compress.export import load_export

        data = load_data(dataset)
        model = load_export(export)
        metrics = test_metrics(model, dataset, teacher)
        e = recipe.evaluate
        system = system_metrics(model, data.x_test[:e.latency_batch_size], iters=e.latency_iters, warmup=e.warmup,
                                path=export)
        metrics.update({k: float(v) for k, v in system.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

    def export(self, recipe, variant, checkpoint: Path, dest: Path, *, metrics: dict[str, float],
               lineage: list[dict[str, Any]], dataset: Path | None = None) -> Path:
        return self._write_export(recipe, variant, checkpoint, dest, dataset, metrics=metrics, lineage=lineage,
                                  overwrite=True)


TASK = register_task(ImageClassification())
