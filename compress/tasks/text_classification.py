"""The `text_classification` task: bring a transformers checkpoint and labelled text, get a distilled,
pruned and quantized classifier that `transformers.pipeline("text-classification", model=dir)` loads.

Stages (compress/tasks/base.py): dataset (CSV/JSONL/Parquet files, a `datasets` id, or the packaged
Shakespeare genre set; checked and stored as JSONL; optionally unlabelled texts as a KD transfer set) ->
teacher (an ...ForSequenceClassification as is, or an encoder fine-tuned on the training split) ->
teacher_data (teacher logits on the training split and the transfer set) ->
distill (DistilBERT-style student: every other teacher layer, KD on logits with T^2 scaling, optional
hidden-state cosine term) -> prune (FFN neurons and layers physically removed, then a short KD recovery)
-> quantize (any registered technique; bitsandbytes int8/nf4 export with a `quantization_config` so
transformers reloads them) -> evaluate -> export (HF layout, tokenizer, model card).

Recipe sections: data, teacher, teacher_data, student, distill, prune (see `TextClassificationSections`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compress.tasks.base import Output, Section, register_task, section_enabled
from compress.text.shakespeare import HELD_OUT

_BASE = ("compress.tasks.text_classification", "compress.text.stages")


class ShakespeareSection(Section):
    passages_per_play: int = Field(40, ge=2)
    lines_per_passage: int = Field(10, ge=1)
    seen_fraction: float = Field(0.15, gt=0, lt=1, description="passages of training plays kept for test_seen")
    held_out: list[str] = Field(default_factory=lambda: list(HELD_OUT))
    split: Literal["play", "passage"] = "play"
    transfer_per_play: int = Field(0, ge=0, description="unlabelled passages per training play that the student "
                                   "distils on (teacher logits only; held-out plays never)")


class DataSection(Section):
    train: str | None = Field(None, description="CSV/TSV/JSONL/Parquet file of the training split")
    test: str | None = Field(None, description="file of the held-out split (same columns)")
    hub_dataset: str | None = Field(None, description="a Hugging Face datasets id or local dataset folder")
    hub_config: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    builtin: Literal["shakespeare_genre"] | None = None
    unlabelled: str | None = Field(None, description="file of extra texts without labels (text_column only): a "
                                   "KD transfer set, labelled by the teacher's logits")
    shakespeare: ShakespeareSection = Field(default_factory=ShakespeareSection)
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = Field(128, ge=8, le=4096, description="tokens per text (longer texts are truncated)")

    @model_validator(mode="after")
    def _one_source(self):
        given = [n for n in ("train", "hub_dataset", "builtin") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(f"data needs exactly one of train (+ test), hub_dataset or builtin, got {given or 'none'}")
        if self.train and not self.test:
            raise ValueError("data.train is set but data.test is not; pass a held-out file too")
        return self


class FineTuneSection(Section):
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-5, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (None: all epochs)")


class TeacherSection(Section):
    enabled: bool = True
    model: str = Field("minilm", description="'minilm' (packaged MiniLM-L6), a folder or a hub id")
    num_labels: int | None = Field(None, ge=2, description="for an encoder checkpoint: must equal the data's")
    fine_tune: FineTuneSection = Field(default_factory=FineTuneSection)
    trust_remote_code: bool = False


class TeacherDataSection(Section):
    enabled: bool = True
    batch_size: int = Field(64, ge=1)


class StudentSection(Section):
    layers: Literal["every_other", "all"] | list[int] = "every_other"
    hidden_size: int | None = Field(None, ge=8, description="narrower hidden size (random init); None: teacher's")
    init: Literal["teacher", "random"] = "teacher"


class DistillSection(FineTuneSection):
    epochs: int = Field(2, ge=1)
    lr: float = Field(1e-4, gt=0)
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="hard-label weight; 1 - alpha goes to the KD term")
    hidden_weight: float = Field(0.0, ge=0, description="DistilBERT cosine term on hidden states (0 = off)")


class PruneSection(Section):
    enabled: bool = True
    ffn: float | Literal["sap"] = Field(0.5, description="fraction of FFN neurons removed per layer, or 'sap'")
    score: Literal["magnitude", "pqi"] = "magnitude"
    drop_layers: list[int] = Field(default_factory=list, description="encoder layers removed whole")
    recover: FineTuneSection = Field(default_factory=FineTuneSection)


class TextClassificationSections(Section):
    data: DataSection
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    teacher_data: TeacherDataSection = Field(default_factory=TeacherDataSection)
    student: StudentSection = Field(default_factory=StudentSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    prune: PruneSection = Field(default_factory=PruneSection)


def _file_digest(path: str) -> str:
    p = Path(path).expanduser()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    digest = hashlib.sha256(path.encode() if not files else b"")
    for f in files:
        digest.update(f.name.encode() + hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


def _teacher_digest(model: str) -> str:
    """sha256 over the teacher folder's files (a packaged alias hashes its installed folder; a hub id
    its name)."""
    from compress.text.models import PACKAGED, resolve_source

    return _file_digest(resolve_source(model) if model in PACKAGED else model)


@dataclasses.dataclass
class TextClassificationTask:
    name: str = "text_classification"
    sections: type = TextClassificationSections
    path_fields = ("data.train", "data.test", "data.unlabelled", "teacher.model")  # resolved against the recipe file's folder
    parallel_variants = False  # transformers model loading is not thread-safe (see flows/flow.py)
    sources: dict = dataclasses.field(default_factory=lambda: {
        "dataset": (*_BASE, "compress.text.data", "compress.text.shakespeare"),
        "teacher": (*_BASE, "compress.text.models", "compress.text.train"),
        "teacher_data": (*_BASE, "compress.text.train"),
        "distill": (*_BASE, "compress.text.models", "compress.text.train",
                    "compress.distill.losses"),
        "prune": (*_BASE, "compress.text.prune", "compress.prune.pq_index",
                  "compress.text.train"),
        "quantize": (*_BASE, "compress.export.api", "compress.export.hf"),
        "evaluate": (*_BASE, "compress.text.evaluate", "compress.export.loader"),
        "export": (*_BASE, "compress.export.api", "compress.export.card"),
    })

    def stage_params(self, stage: str, recipe: Any) -> dict[str, Any]:
        data = recipe.data
        common = {"seed": recipe.seed, "max_length": data.max_length}
        if stage == "dataset":
            files = {k: _file_digest(v) for k in ("train", "test", "unlabelled") if (v := getattr(data, k))}
            return {**data.model_dump(), "seed": recipe.seed, "files": files}
        if stage == "teacher":
            return {**common, **recipe.teacher.model_dump(), "model_sha256": _teacher_digest(recipe.teacher.model)}
        if stage in ("teacher_data", "distill", "prune"):
            parts = {"teacher_data": ("teacher_data",), "distill": ("student", "distill", "teacher"),
                     "prune": ("prune", "distill")}[stage]
            return {**common, **{p: getattr(recipe, p).model_dump() for p in parts}}
        if stage == "evaluate":
            return {**common, "evaluate": recipe.evaluate.model_dump()}
        return common

    def enabled(self, stage: str, recipe: Any) -> bool:
        if stage == "teacher_data":
            return recipe.teacher.enabled and recipe.teacher_data.enabled
        if stage in ("teacher", "prune", "quantize", "evaluate", "export"):
            return section_enabled(recipe, stage)
        return True

    def preflight(self, recipe: Any) -> None:
        """Cheap checks a flow may run before any stage: the data files (columns, empty texts, test labels
        the training split lacks) and the teacher source (folder, model kind, hub while offline)."""
        from compress.text.stages import check_recipe

        check_recipe(recipe)

    def dataset(self, recipe: Any, workdir: Path) -> Output:
        from compress.text.stages import build_dataset

        return build_dataset(recipe, workdir)

    def teacher(self, recipe: Any, dataset: Path, workdir: Path) -> Output:
        from compress.text.stages import make_teacher

        return make_teacher(recipe, dataset, workdir)

    def teacher_data(self, recipe: Any, dataset: Path, teacher: Path, workdir: Path) -> Output:
        from compress.text.stages import teacher_logits

        return teacher_logits(recipe, dataset, teacher, workdir)

    def distill(self, recipe: Any, dataset: Path, teacher_data: Path | None, teacher: Path | None,
                workdir: Path) -> Output:
        from compress.text.stages import distill_student

        return distill_student(recipe, dataset, teacher_data, teacher, workdir)

    def prune(self, recipe: Any, dataset: Path, checkpoint: Path, teacher: Path | None, workdir: Path) -> Output:
        from compress.text.stages import prune_student

        return prune_student(recipe, dataset, checkpoint, teacher, workdir)

    def quantize(self, recipe: Any, variant: Any, checkpoint: Path, dataset: Path, workdir: Path) -> Output:
        from compress.text.stages import quantize_variant

        return quantize_variant(recipe, variant, checkpoint, dataset, workdir)

    def evaluate(self, recipe: Any, export: Path, dataset: Path, teacher: Path | None) -> dict[str, float]:
        from compress.text.stages import evaluate_export

        return evaluate_export(recipe, export, dataset, teacher)

    def export(self, recipe: Any, variant: Any, checkpoint: Path, dest: Path, *, metrics: dict[str, float],
               lineage: list[dict[str, Any]], dataset: Path | None = None) -> Path:
        from compress.text.stages import export_variant

        return export_variant(recipe, variant, checkpoint, dest, metrics=metrics, lineage=lineage)


TASK = register_task(TextClassificationTask())
