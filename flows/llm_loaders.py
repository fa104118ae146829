"""Glue of the causal-LM path (`task: causal_lm`): the same stage sequence as classification, with
compress.llm / compress.evaluate.lm underneath. No technique logic here.

Artifacts: the dataset is a JSON manifest holding the prompts and the held-out passages; the teacher is
a JSON manifest naming its source (the packaged SmolLM2 is converted once and cached by compress.llm);
teacher data is the generated JSONL; models between stages are HF folders (save_pretrained + tokenizer);
variants are compress.export HF-layout exports.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from flows.recipe import QuantVariant, Recipe
from flows.record import artifact_meta, artifact_path


def _llm(recipe: Recipe):
    assert recipe.llm is not None, "causal_lm recipes always carry an llm section (set by the validator)"
    return recipe.llm


def dataset_manifest(recipe: Recipe, workdir: Path) -> Path:
    from compress.llm.corpus import SOURCES, corpus_passages, make_prompts

    p = _llm(recipe)
    prompts = make_prompts(p.corpus, p.n_prompts, seed=recipe.seed)
    source = p.corpus if p.corpus in SOURCES else "shakespeare"
    heldout = corpus_passages(source, p.n_heldout, seed=recipe.seed + 10_000)
    path = workdir / "corpus.json"
    path.write_text(json.dumps({"task": "causal_lm", "corpus": p.corpus, "seed": recipe.seed, "prompts": prompts,
                                "heldout": heldout}, indent=1))
    return path


@functools.lru_cache(maxsize=2)
def _texts(dataset_id: int) -> dict[str, list[str]]:
    return json.loads(artifact_path(dataset_id).read_text())


@functools.lru_cache(maxsize=1)
def load_teacher(teacher_id: int):
    from compress.llm.teacher import load_causal_lm

    meta = artifact_meta(teacher_id)
    return load_causal_lm(meta["source"], dtype=meta["dtype"])


def teacher_manifest(recipe: Recipe, workdir: Path) -> Path:
    p = _llm(recipe)
    load_teacher.cache_clear()
    path = workdir / "teacher.json"
    path.write_text(json.dumps({"source": p.teacher, "dtype": p.dtype}))
    return path


def generate(recipe: Recipe, dataset_id: int, teacher_id: int, workdir: Path) -> Path:
    from compress.llm.generate import generate_dataset

    model, tokenizer = load_teacher(teacher_id)
    return generate_dataset(model, tokenizer, _texts(dataset_id)["prompts"], workdir / "teacher_data.jsonl",
                            config=_llm(recipe).generate_config(recipe.seed), teacher_name=_llm(recipe).teacher)


def save_hf(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def load_hf(artifact_id: int):
    from compress.llm.teacher import load_causal_lm

    return load_causal_lm(str(artifact_path(artifact_id)))


def lm_quality(model, tokenizer, dataset_id: int, teacher_id: int | None, recipe: Recipe) -> dict[str, float]:
    from compress.evaluate.lm import lm_metrics

    teacher = load_teacher(teacher_id)[0] if teacher_id is not None else None
    metrics = lm_metrics(model, tokenizer, _texts(dataset_id)["heldout"], teacher, max_length=_llm(recipe).max_length,
                         max_new_tokens=8)
    return {k: float(v) for k, v in metrics.items()}


def train_student(recipe: Recipe, dataset_id: int, soft_labels_id: int, teacher_id: int, workdir: Path):
    from compress.llm.distill import distill_lm
    from compress.llm.student import make_student

    p = _llm(recipe)
    teacher, tokenizer = load_teacher(teacher_id)
    student = make_student(teacher, num_layers=p.student_layers, hidden_size=p.student_hidden,
                           init_from_teacher=p.init_from_teacher, seed=recipe.seed)
    distill_lm(student, tokenizer, artifact_path(soft_labels_id), p.distill_config(recipe.seed), teacher=None)
    student.eval()
    return save_hf(student, tokenizer, workdir / "student"), lm_quality(student, tokenizer, dataset_id, teacher_id, recipe)


def prune_model(recipe: Recipe, dataset_id: int, checkpoint_id: int, teacher_id: int, workdir: Path):
    """`prune.rounds` one-shot rounds of the configured pruning (no fine-tuning on this path)."""
    from compress.prune import prune_

    model, tokenizer = load_hf(checkpoint_id)
    masks, report = None, None
    for _ in range(recipe.prune.rounds):
        report = prune_(model, recipe.prune.to_config(), masks)
        masks = report.masks
    metrics = {**lm_quality(model, tokenizer, dataset_id, teacher_id, recipe),
               "retained_fraction": report.retained_fraction}
    return save_hf(model, tokenizer, workdir / "pruned"), metrics


def quantized_export(recipe: Recipe, variant: QuantVariant, checkpoint_id: int, dest: Path,
                     metrics: dict[str, float] | None = None, lineage: list[dict[str, Any]] | None = None,
                     overwrite: bool = False) -> Path:
    from compress.export import export_model
    from compress.quantize import load_quantized_hf

    config = variant.to_config()
    source = str(artifact_path(checkpoint_id))
    model, tokenizer = load_quantized_hf(source, config) if config is not None else load_hf(checkpoint_id)
    meta = {"variant": variant.name, "technique": variant.technique}
    if metrics is not None:
        meta |= {"recipe": recipe.name, "recipe_hash": recipe.build_hash()}
    result = export_model(model, dest, metadata=meta, metrics=metrics or {}, lineage=lineage or [], tokenizer=tokenizer,
                          reproduce=f"shrinkwrap run recipe.yaml  # recipe {recipe.name!r}", overwrite=overwrite)
    return Path(result.path)


def evaluate_export(recipe: Recipe, path: Path, dataset_id: int, teacher_id: int | None) -> dict[str, float]:
    from compress.evaluate.system import file_bytes
    from compress.export import load_export
    from compress.llm.teacher import load_tokenizer

    model = load_export(path)
    tokenizer = load_tokenizer(str(path))
    metrics = lm_quality(model, tokenizer, dataset_id, teacher_id, recipe)
    metrics["file_bytes"] = float(file_bytes(path))
    return metrics
