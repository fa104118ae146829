"""Recipe sections of the image-classification task (`task: classification`): dataset, teacher,
teacher_data, student, distill, prune. Each maps onto the `*Config` of the compress/ technique it drives
and validates by building it, so a bad recipe is refused before any work, with the field named.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from compress.tasks.base import Section, build_config
from compress.tasks.sections import PruneParams as OneShotPruneParams


class DatasetParams(Section):
    name: Literal["mnist", "fashion_mnist", "npz"] = "mnist"
    path: str | None = Field(None, description="the .npz file when name is 'npz' (x_train, y_train, x_test, y_test)")
    n_train: int | None = Field(None, ge=1, description="labelled training samples (seeded subset); None = all")
    n_test: int | None = Field(None, ge=1, description="test samples used for evaluation; None = all")

    @model_validator(mode="after")
    def _path_matches_name(self):
        if self.name == "npz" and not self.path:
            raise ValueError("dataset.path is required when dataset.name is 'npz' (a file with x_train, "
                             "y_train, x_test, y_test)")
        if self.name != "npz" and self.path:
            raise ValueError(f"dataset.path is only for name 'npz', got name={self.name!r}; remove the path")
        return self


class ModelParams(Section):
    """A zoo architecture (compress/models.py); input size and classes come from the dataset."""

    arch: Literal["mlp", "mnist_cnn"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128], min_length=1,
                              description="hidden widths (mlp); the first is the dense width of mnist_cnn")
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=2, max_length=2,
                                description="conv channels (mnist_cnn only)")

    def model_spec(self, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
        """The `compress.models.build_model` spec for this architecture on inputs of `input_shape`."""
        if self.arch == "mlp":
            return {"arch": "mlp", "in_features": math.prod(input_shape), "hidden": list(self.hidden),
                    "num_classes": num_classes}
        if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
            raise ValueError(f"arch 'mnist_cnn' needs square image inputs (C, H, H), got input shape "
                             f"{tuple(input_shape)}; use arch 'mlp' for this dataset")
        return {"arch": "mnist_cnn", "channels": list(self.channels), "hidden": self.hidden[0],
                "num_classes": num_classes, "in_channels": input_shape[0], "image_size": input_shape[1]}


class TeacherTrainParams(Section):
    """Maps onto compress.teacher.TeacherConfig: arch auto = a CNN for square images, else an MLP."""

    arch: Literal["auto", "cnn", "mlp"] = "auto"
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=2, max_length=2)
    hidden: int = 128
    mlp_hidden: list[int] = Field(default_factory=lambda: [512, 512])
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"

    def to_config(self, seed: int = 0):
        from compress.teacher import TeacherConfig

        return build_config("teacher.train", TeacherConfig, arch=self.arch, channels=tuple(self.channels),
                      hidden=self.hidden, mlp_hidden=tuple(self.mlp_hidden), epochs=self.epochs,
                      batch_size=self.batch_size, lr=self.lr, seed=seed, optimizer=self.optimizer)


class TeacherParams(Section):
    enabled: bool = True
    source: Literal["packaged", "train", "path"] = Field(
        "packaged", description="packaged: a teacher shipped with the install (ccexam-mnist); train: train a "
        "CNN on the dataset; path: a local safetensors export")
    name: str = Field("ccexam-mnist", description="packaged teacher name")
    path: str | None = None
    train: TeacherTrainParams = Field(default_factory=TeacherTrainParams)

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "path" and not self.path:
            raise ValueError("teacher.path is required when teacher.source is 'path'")
        if self.enabled and self.source == "train":
            self.train.to_config()
        return self


class TeacherDataParams(Section):
    enabled: bool = True
    n_transfer: int | None = Field(None, ge=1, description="inputs labelled by the teacher (>= dataset.n_train); "
                                   "unlabelled extra inputs cost nothing but teacher time")
    batch_size: int = Field(1024, ge=1)


class StudentParams(ModelParams):
    channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=2, max_length=2,
                                description="conv channels (mnist_cnn only)")


class DistillParams(Section):
    enabled: bool = True
    temperature: float = 4.0
    alpha: float = Field(0.1, description="weight of hard-label cross-entropy; 1 - alpha goes to the KD term")
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    baseline: bool = Field(False, description="also train the same student from scratch and log its metrics")

    @model_validator(mode="after")
    def _valid_config(self):
        if self.enabled:
            self.to_config()
        return self

    def to_config(self, seed: int = 0):
        from compress.distill import KDConfig

        return build_config("distill", KDConfig, temperature=self.temperature, alpha=self.alpha, epochs=self.epochs,
                      batch_size=self.batch_size, lr=self.lr, seed=seed, optimizer=self.optimizer)


class PruneParams(OneShotPruneParams):
    """Pruning rounds, each followed by fine-tuning with the pruned weights held at zero."""

    rounds: int = Field(2, ge=1, description="prune + fine-tune rounds")
    epochs: int = Field(1, ge=0, description="fine-tune epochs per round")
    rewind: bool = Field(False, description="rewind surviving weights to their pre-pruning values each round")
    lr: float = Field(1e-3, gt=0, description="fine-tuning learning rate")
    batch_size: int = Field(128, ge=1, description="fine-tuning batch size")


class ClassificationSections(Section):
    """The sections of `task: classification` (flows/recipe.py adds name, seed, quantize, evaluate,
    export and promote)."""

    dataset: DatasetParams = Field(default_factory=DatasetParams, description="the labelled data")
    teacher: TeacherParams = Field(default_factory=TeacherParams, description="where the teacher comes from")
    teacher_data: TeacherDataParams = Field(default_factory=TeacherDataParams,
                                            description="the teacher's soft labels on the transfer set")
    student: StudentParams = Field(default_factory=StudentParams, description="the student architecture")
    distill: DistillParams = Field(default_factory=DistillParams, description="knowledge distillation")
    prune: PruneParams = Field(default_factory=PruneParams, description="pruning rounds with fine-tuning")

    @model_validator(mode="after")
    def _consistent(self):
        if self.distill.enabled and not (self.teacher.enabled and self.teacher_data.enabled):
            raise ValueError("distill needs teacher and teacher_data enabled; enable them or set "
                             "distill.enabled: false (the student then trains from scratch)")
        if self.teacher_data.enabled and not self.teacher.enabled:
            raise ValueError("teacher_data needs teacher.enabled: true")
        n_train, n_transfer = self.dataset.n_train, self.teacher_data.n_transfer
        if n_train and n_transfer and n_transfer < n_train:
            raise ValueError(f"teacher_data.n_transfer={n_transfer} must be >= dataset.n_train={n_train} "
                             "(the transfer set contains the labelled set)")
        return self
