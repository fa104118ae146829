"""The task interface: what one kind of model (image classification, causal LM, text classification)
must provide so that the generic pipeline stages in flows/ can run it.

A task is one module in compress/tasks/ that builds an object with this shape and registers it with
`register_task`. Stages in flows/stages.py look the task up by `recipe.task` and call one method per
stage; they never branch on the task's name. Prefect and SQL stay in flows/ and registry/: a task
method gets local paths (the stage materialises its input artifacts) and a scratch `workdir`, and
returns an `Output` naming the file or folder to record, its format, metrics and metadata.

    task = TASKS["classification"]
    out = task.dataset(recipe, workdir)                        # Output(path=..., format=..., kind="dataset")
    out = task.teacher(recipe, dataset=Path(...), workdir=...)

Cache keys: `sources[stage]` lists the modules (dotted names or repository-relative paths) whose source
is hashed into that stage's cache key, next to the inputs' sha256 and `stage_params(stage, recipe)`.
So editing compress/llm/distill.py invalidates only the causal-LM stages that declare it.

The recipe: `sections` is a pydantic model whose fields are the task's own recipe sections (unknown
fields refused). flows/recipe.py adds the shared sections (name, seed, quantize, evaluate, export,
promote) and a `task: Literal[name]` discriminator, so a field another task uses is refused here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

STAGES = ("dataset", "teacher", "teacher_data", "distill", "prune", "quantize", "evaluate", "export")


class Section(BaseModel):
    """Base of every recipe section: unknown fields are refused (a typo fails loudly)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def build_config(section: str, factory, **kwargs):
    """Build a compress/ `*Config`, turning its __post_init__ error into a ValueError that pydantic
    reports under the recipe field being validated (so the message names the section)."""
    try:
        return factory(**kwargs)
    except (ValueError, TypeError) as err:
        raise ValueError(str(err)) from err


@dataclasses.dataclass
class Output:
    """What a task's stage method made: one artifact to record, plus what goes with it.

    path: the file or folder to store (content-addressed; it may be moved into the store).
    format: how to read it back, e.g. "hf", "safetensors+spec", "jsonl", "dataset-manifest+json".
    kind: the registry artifact kind ("dataset", "teacher", "soft-labels", "checkpoint", "export").
    metrics: finite floats recorded on the artifact. metadata: JSON-able, stored on the artifact.
    steps: per-step metrics (e.g. one dict per prune round) logged with their step number.
    plots: PNG files recorded as `plot` artifacts that descend from this one.
    extra: JSON-able values the stage returns to the flow (e.g. the rounds table).
    """

    path: Path
    format: str
    kind: str = "checkpoint"
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: list[tuple[int, dict[str, float]]] = dataclasses.field(default_factory=list)
    plots: list[Path] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """One kind of model. Paths are local; `recipe` is the validated recipe of this task (its
    `sections` fields plus the shared quantize/evaluate/export sections, `name` and `seed`)."""

    name: str
    sections: type[BaseModel]
    sources: Mapping[str, tuple[str, ...]]

    def stage_params(self, stage: str, recipe: Any) -> dict[str, Any]:
        """The JSON-able parameters of `stage` that decide its output (its cache-key parameters).
        For a user file, hash its content rather than its name."""

    def enabled(self, stage: str, recipe: Any) -> bool:
        """Whether `stage` runs for this recipe (dataset and distill always run)."""

    def dataset(self, recipe: Any, workdir: Path) -> Output: ...

    def teacher(self, recipe: Any, dataset: Path, workdir: Path) -> Output: ...

    def teacher_data(self, recipe: Any, dataset: Path, teacher: Path, workdir: Path) -> Output: ...

    def distill(self, recipe: Any, dataset: Path, teacher_data: Path | None, teacher: Path | None,
                workdir: Path) -> Output:
        """The student: distilled on `teacher_data` when given, else trained from the labels."""

    def prune(self, recipe: Any, dataset: Path, checkpoint: Path, teacher: Path | None, workdir: Path) -> Output: ...

    def quantize(self, recipe: Any, variant: Any, checkpoint: Path, dataset: Path, workdir: Path) -> Output:
        """`variant` (name, technique, options) applied to `checkpoint`, written as an export folder
        (compress.export). Techniques with `needs_calibration` get their data from `dataset` here."""

    def evaluate(self, recipe: Any, export: Path, dataset: Path, teacher: Path | None) -> dict[str, float]:
        """Quality against the held-out split (and the teacher), size and speed of an export."""

    def export(self, recipe: Any, variant: Any, checkpoint: Path, dest: Path, *, metrics: dict[str, float],
               lineage: list[dict[str, Any]], dataset: Path | None = None) -> Path:
        """The shipped export at `dest` (overwritten): the same quantization of `checkpoint` as the
        evaluated one, with metrics and lineage in its model card. Loads in its ecosystem without us."""


# Optional members a task may add: `preflight(recipe)` (cheap checks of the user's files, run by the flow
# before any stage), `path_fields` (dotted recipe fields holding paths, resolved against the recipe file) and
# `parallel_variants = False` (run the variant branches one after the other, e.g. for transformers models).

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    missing = [m for m in ("sections", "sources", "stage_params", "enabled", *STAGES) if not hasattr(task, m)]
    if missing:
        raise TypeError(f"task {getattr(task, 'name', task)!r} lacks {missing}; see compress/tasks/base.py")
    if task.name in TASKS and type(TASKS[task.name]) is not type(task):
        raise ValueError(f"task {task.name!r} is already registered by {type(TASKS[task.name]).__module__}")
    TASKS[task.name] = task
    return task


def section_enabled(recipe: Any, stage: str) -> bool:
    """The common rule: a stage runs unless its recipe section says `enabled: false`."""
    return bool(getattr(getattr(recipe, stage, None), "enabled", True))
