"""The stage bodies of the `text_classification` task (compress/tasks/text_classification.py): local
paths in, an `Output` out. Checkpoints between stages are plain `save_pretrained` folders (model plus
tokenizer); quantized variants and the shipped model are `compress.export` folders in the HF layout.

Quantized exports: a technique that knows a transformers `quantization_config` (bitsandbytes int8 / nf4
/ fp4) has its layers swapped by `apply`, then the config is set on the model, so `save_pretrained`
writes it and `from_pretrained` / `pipeline()` rebuild the quantized layers without shrinkwrap. The
classification head stays float (skip_modules defaults to ["classifier"]). A technique without such a
config is refused here: its HF export would not load in transformers.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from compress.data import UNLABELLED
from compress.tasks.base import Output
from compress.text.data import (
    TRANSFER,
    TextDataError,
    TextSplits,
    load_files,
    load_hub_dataset,
    load_text_dataset,
    load_unlabelled,
    save_text_dataset,
)
from compress.text.evaluate import quality, speed
from compress.text.models import build_student, load_teacher_model
from compress.text.train import TrainSettings, encode, predict_logits, train_classifier

FORMAT_DATA, FORMAT_HF, FORMAT_LOGITS = "text-dataset+jsonl", "hf", "safetensors"


def _encoded(tokenizer: Any, data: TextSplits, split: str, max_length: int) -> tuple[dict, torch.Tensor]:
    texts, labels = data.splits[split]
    return encode(tokenizer, texts, max_length), torch.tensor(labels, dtype=torch.long)


def _eval_splits(data: TextSplits) -> list[str]:
    return ["test", *sorted(s for s in data.splits if s not in ("train", "test", TRANSFER))]


def _prefix(split: str) -> str:
    return "" if split == "test" else f"{split.removeprefix('test_')}_"


def _split_accuracy(model, tokenizer, data: TextSplits, max_length: int) -> dict[str, float]:
    out = {}
    for split in _eval_splits(data):
        enc, y = _encoded(tokenizer, data, split, max_length)
        out[f"{_prefix(split)}accuracy"] = quality(predict_logits(model, enc), y, len(data.labels))["accuracy"]
    return out


def _load_hf(folder: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return (AutoModelForSequenceClassification.from_pretrained(folder).eval(),
            AutoTokenizer.from_pretrained(folder))


def _save(model, tokenizer, root: Path) -> Path:
    model.save_pretrained(root, safe_serialization=True)
    tokenizer.save_pretrained(root)
    return root


def _settings(section: Any, seed: int, **extra: Any) -> TrainSettings:
    return TrainSettings(epochs=section.epochs, batch_size=section.batch_size, lr=section.lr,
                         max_steps=section.max_steps, seed=seed, **extra)


def check_recipe(recipe: Any) -> None:
    """Read and check user data files and the teacher's config (no weights): fails with the field named."""
    from compress.text.models import model_kind, resolve_source

    d = recipe.data
    if d.train:
        load_files({"train": d.train, "test": d.test}, text_column=d.text_column, label_column=d.label_column)
    if d.unlabelled:
        load_unlabelled(d.unlabelled, text_column=d.text_column)
    if recipe.teacher.enabled:
        model_kind(resolve_source(recipe.teacher.model), trust_remote_code=recipe.teacher.trust_remote_code)


def build_dataset(recipe: Any, workdir: Path) -> Output:
    d, s = recipe.data, recipe.data.shakespeare
    if d.builtin == "shakespeare_genre":
        from compress.text.shakespeare import build_genre_splits

        data = build_genre_splits(passages_per_play=s.passages_per_play, lines_per_passage=s.lines_per_passage,
                                  seen_fraction=s.seen_fraction, held_out=tuple(s.held_out), split=s.split,
                                  seed=recipe.seed)
    elif d.hub_dataset:
        data = load_hub_dataset(d.hub_dataset, config=d.hub_config, text_column=d.text_column,
                                label_column=d.label_column, splits={"train": d.train_split, "test": d.test_split})
    else:
        data = load_files({"train": d.train, "test": d.test}, text_column=d.text_column,
                          label_column=d.label_column)
    transfer = load_unlabelled(d.unlabelled, text_column=d.text_column) if d.unlabelled else []
    if d.builtin == "shakespeare_genre" and s.transfer_per_play:
        from compress.text.shakespeare import transfer_passages

        transfer += transfer_passages(data, per_play=s.transfer_per_play, lines_per_passage=s.lines_per_passage,
                                      held_out=tuple(s.held_out), seed=recipe.seed)
    if transfer:
        data.splits[TRANSFER] = (transfer, [UNLABELLED] * len(transfer))
    root = save_text_dataset(data, workdir / "dataset", meta={"source": d.builtin or d.hub_dataset or d.train})
    metrics = {f"n_{name}": float(len(texts)) for name, (texts, _) in data.splits.items()}
    return Output(path=root, format=FORMAT_DATA, kind="dataset", metrics={**metrics, "num_labels": float(len(data.labels))},
                  metadata={"labels": data.labels})


def make_teacher(recipe: Any, dataset: Path, workdir: Path) -> Output:
    data, t = load_text_dataset(dataset), recipe.teacher
    if t.num_labels is not None and t.num_labels != len(data.labels):
        raise TextDataError(f"teacher.num_labels is {t.num_labels} but the training split has {len(data.labels)} "
                            f"labels {data.labels}; fix teacher.num_labels or drop it")
    model, tokenizer, kind = load_teacher_model(t.model, data.labels, trust_remote_code=t.trust_remote_code,
                                                seed=recipe.seed)
    metrics: dict[str, float] = {}
    if kind == "encoder":
        enc, y = _encoded(tokenizer, data, "train", recipe.data.max_length)
        metrics.update(train_classifier(model, enc, y, _settings(t.fine_tune, recipe.seed)))
    metrics.update(_split_accuracy(model, tokenizer, data, recipe.data.max_length))
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    return Output(path=_save(model, tokenizer, workdir / "teacher"), format=FORMAT_HF, kind="teacher",
                  metrics=metrics, metadata={"source": t.model, "fine_tuned": kind == "encoder"})


def teacher_logits(recipe: Any, dataset: Path, teacher: Path, workdir: Path) -> Output:
    data = load_text_dataset(dataset)
    model, tokenizer = _load_hf(teacher)
    logits = {}
    for split in ("train", TRANSFER) if TRANSFER in data.splits else ("train",):
        enc, _ = _encoded(tokenizer, data, split, recipe.data.max_length)
        logits[split] = predict_logits(model, enc, recipe.teacher_data.batch_size).contiguous()  # (N, C)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "teacher_logits.safetensors"
    save_file(logits, path)
    return Output(path=path, format=FORMAT_LOGITS, kind="soft-labels",
                  metrics={f"n_{split}": float(len(t)) for split, t in logits.items()})


def _distill_set(tokenizer: Any, data: TextSplits, max_length: int, soft: dict | None):
    """(encodings, labels, teacher logits or None) the student trains on: the training split, then the
    transfer split's unlabelled texts (label UNLABELLED: soft term only) when the teacher labelled them."""
    texts, labels = data.splits["train"]
    logits = soft["train"] if soft is not None else None
    if soft is not None and TRANSFER in soft and TRANSFER in data.splits:
        extra = data.splits[TRANSFER][0]
        texts, labels = texts + extra, labels + [UNLABELLED] * len(extra)
        logits = torch.cat([logits, soft[TRANSFER]])  # (N_train + N_transfer, C)
    return encode(tokenizer, texts, max_length), torch.tensor(labels, dtype=torch.long), logits


def _base_model(recipe: Any, data: TextSplits, teacher: Path | None):
    if teacher is not None:
        return _load_hf(teacher)
    model, tokenizer, _ = load_teacher_model(recipe.teacher.model, data.labels,
                                             trust_remote_code=recipe.teacher.trust_remote_code, seed=recipe.seed)
    return model, tokenizer


def distill_student(recipe: Any, dataset: Path, teacher_data: Path | None, teacher: Path | None,
                    workdir: Path) -> Output:
    data, s, d = load_text_dataset(dataset), recipe.student, recipe.distill
    base, tokenizer = _base_model(recipe, data, teacher)
    student, keep = build_student(base, layers=s.layers, hidden_size=s.hidden_size, init=s.init, seed=recipe.seed)
    hidden = d.hidden_weight > 0 and teacher is not None
    if hidden and student.config.hidden_size != base.config.hidden_size:
        raise ValueError(f"distill.hidden_weight={d.hidden_weight} needs the teacher's hidden size "
                         f"{base.config.hidden_size}, but student.hidden_size is {s.hidden_size}; set one to 0/None")
    enc, y, logits = _distill_set(tokenizer, data, recipe.data.max_length,
                                  load_file(teacher_data) if teacher_data is not None else None)
    settings = _settings(d, recipe.seed, temperature=d.temperature, alpha=d.alpha, hidden_weight=d.hidden_weight)
    metrics = train_classifier(student, enc, y, settings, teacher_logits=logits, teacher=base if hidden else None,
                               keep=keep)
    metrics.update(_split_accuracy(student, tokenizer, data, recipe.data.max_length))
    metrics["params"] = float(sum(p.numel() for p in student.parameters()))
    return Output(path=_save(student, tokenizer, workdir / "student"), format=FORMAT_HF, metrics=metrics,
                  metadata={"teacher_layers": keep, "kd": logits is not None})


def prune_student(recipe: Any, dataset: Path, checkpoint: Path, teacher: Path | None, workdir: Path) -> Output:
    from compress.text.prune import prune_encoder_

    data, p = load_text_dataset(dataset), recipe.prune
    model, tokenizer = _load_hf(checkpoint)
    result = prune_encoder_(model, ffn=p.ffn, score=p.score, drop_layers=p.drop_layers)
    metrics = result.metrics()
    metrics.update({f"pruned_{k}": v for k, v in _split_accuracy(model, tokenizer, data,
                                                                 recipe.data.max_length).items()})
    enc, y = _encoded(tokenizer, data, "train", recipe.data.max_length)
    logits = predict_logits(_load_hf(teacher)[0], enc) if teacher is not None else None
    settings = _settings(p.recover, recipe.seed, temperature=recipe.distill.temperature, alpha=recipe.distill.alpha)
    metrics.update(train_classifier(model, enc, y, settings, teacher_logits=logits))
    metrics.update(_split_accuracy(model, tokenizer, data, recipe.data.max_length))
    return Output(path=_save(model, tokenizer, workdir / "pruned"), format=FORMAT_HF, metrics=metrics,
                  metadata=dataclasses.asdict(result))


def quantized_model(variant: Any, checkpoint: Path, calibration: Any = None):
    """(model, tokenizer): `checkpoint` quantized as `variant` says, ready for an HF-layout export. A
    checkpoint that is already a compress.export folder is loaded as it is (no second quantization)."""
    from transformers import AutoTokenizer

    from compress.export import load_export
    from compress.techniques import quantized_layers, quantizer

    if (checkpoint / "manifest.json").is_file():
        return load_export(checkpoint), AutoTokenizer.from_pretrained(checkpoint)
    technique = quantizer(variant.technique)
    config = variant.to_config()
    fields = {f.name for f in dataclasses.fields(config)} if config is not None else set()
    if "skip_modules" in fields and not config.skip_modules:
        config = dataclasses.replace(config, skip_modules=("classifier",))  # keep the head float
    if technique.needs_calibration and calibration is None:
        raise ValueError(f"technique {technique.name!r} needs calibration data; export the quantize stage's "
                         "output folder instead of re-quantizing the float checkpoint")
    model, tokenizer = _load_hf(checkpoint)
    model = technique.apply(model, config, calibration)
    if quantized_layers(model):
        if technique.hf_quantization_config is None:
            raise ValueError(f"technique {technique.name!r} has no transformers quantization_config, so its HF "
                             "export would not load with from_pretrained/pipeline; pick int8, nf4 or fp4")
        model.config.quantization_config = technique.hf_quantization_config(config)
    return model.eval(), tokenizer


def _calibration(recipe: Any, variant: Any, checkpoint: Path, dataset: Path) -> Any:
    from compress.techniques import quantizer

    if not quantizer(variant.technique).needs_calibration:
        return None
    from transformers import AutoTokenizer

    data = load_text_dataset(dataset)
    enc, _ = _encoded(AutoTokenizer.from_pretrained(checkpoint), data, "train", recipe.data.max_length)
    return [{k: v[i:i + 32] for k, v in enc.items()} for i in range(0, min(256, len(enc["input_ids"])), 32)]


def quantize_variant(recipe: Any, variant: Any, checkpoint: Path, dataset: Path, workdir: Path) -> Output:
    from compress.export import export_model

    model, tokenizer = quantized_model(variant, checkpoint, _calibration(recipe, variant, checkpoint, dataset))
    workdir.mkdir(parents=True, exist_ok=True)
    result = export_model(model, workdir / variant.name, tokenizer=tokenizer, overwrite=True,
                          metadata={"task": "text_classification", "variant": variant.name,
                                    "technique": variant.technique, "options": variant.options_dict()})
    return Output(path=result.path, format=FORMAT_HF, metrics={"file_bytes": float(result.bytes)},
                  metadata={"variant": variant.name, "technique": variant.technique})


@functools.lru_cache(maxsize=8)
def _teacher_test_logits(teacher: str, dataset: str, split: str, max_length: int) -> torch.Tensor:
    model, tokenizer = _load_hf(Path(teacher))
    enc, _ = _encoded(tokenizer, load_text_dataset(dataset), split, max_length)
    return predict_logits(model, enc)


def evaluate_export(recipe: Any, export: Path, dataset: Path, teacher: Path | None) -> dict[str, float]:
    from transformers import AutoTokenizer

    from compress.evaluate.system import file_bytes, model_size
    from compress.export import load_export

    data, max_length = load_text_dataset(dataset), recipe.data.max_length
    model, tokenizer = load_export(export), AutoTokenizer.from_pretrained(export)
    out: dict[str, float] = {}
    for split in _eval_splits(data):
        enc, y = _encoded(tokenizer, data, split, max_length)
        t_logits = (_teacher_test_logits(str(teacher), str(dataset), split, max_length)
                    if teacher is not None else None)
        q = quality(predict_logits(model, enc), y, len(data.labels), t_logits)
        out.update({f"{_prefix(split)}{k}": v for k, v in q.items()})
    enc, _ = _encoded(tokenizer, data, "test", max_length)
    ev = recipe.evaluate
    out.update(speed(model, enc, warmup=getattr(ev, "warmup", 2), iters=getattr(ev, "latency_iters", 10)))
    size = model_size(model)
    out.update({"params": float(size.params), "weight_bytes": float(size.bytes),
                "file_bytes": float(file_bytes(export))})
    return out


def export_variant(recipe: Any, variant: Any, checkpoint: Path, dest: Path, *, metrics: dict[str, float],
                   lineage: list[dict[str, Any]]) -> Path:
    from compress.export import export_model

    model, tokenizer = quantized_model(variant, checkpoint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    export_model(model, dest, tokenizer=tokenizer, metrics=metrics, lineage=lineage, overwrite=True,
                 metadata={"task": "text_classification", "recipe": recipe.name, "variant": variant.name,
                           "technique": variant.technique, "options": variant.options_dict()})
    return dest
