"""Teachers for knowledge distillation: the packaged ccexam MNIST CNN, a freshly trained one, or a user's.

Step 1 of Hinton, Vinyals & Dean 2015 ("Distilling the Knowledge in a Neural Network") is a strong,
cumbersome model. Three sources:
- `load_packaged_teacher("ccexam-mnist")`: the pretrained ccexam CNN (99.05% MNIST test accuracy),
  rebuilt as `compress.models.MnistCNN` and loaded with `weights_only=True`;
- `train_teacher(dataset, TeacherConfig(...))`: a small CNN (image inputs) or MLP (any other input
  shape) trained with the shared loop `compress.train.fit`;
- `load_teacher(path)`: a user's `model.safetensors` plus its JSON model spec (see `compress.models`).
`check_teacher` refuses a teacher whose output size differs from the dataset's number of classes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

from compress import assets
from compress.data import Dataset
from compress.models import MLP, MnistCNN, build_model, eval_mode
from compress.train import FitConfig, check_inputs, fit

PACKAGED_TEACHERS = ("ccexam-mnist",)
WEIGHTS_FILE, SPEC_FILES = "model.safetensors", ("spec.json", "model_spec.json", "config.json")


class TeacherError(ValueError):
    """A teacher that cannot be used for this dataset (wrong output size, unreadable weights, ...)."""


def load_packaged_teacher(name: str = "ccexam-mnist") -> nn.Module:
    """The pretrained ccexam MNIST CNN (eval mode, CPU). Inputs: (N, 1, 28, 28) pixels in [0, 1]."""
    if name not in PACKAGED_TEACHERS:
        raise ValueError(f"unknown packaged teacher {name!r}; expected one of {list(PACKAGED_TEACHERS)}")
    state = torch.load(assets.ccexam_mnist_weights(), map_location="cpu", weights_only=True)
    model = MnistCNN()
    model.load_state_dict(state)
    return model.eval()


@dataclass
class TeacherConfig(FitConfig):
    """Teacher trained from scratch. arch "auto": a CNN for square (C, H, W) images, else an MLP."""

    arch: Literal["auto", "cnn", "mlp"] = "auto"
    channels: tuple[int, int] = (32, 64)  # the ccexam sizes: 99% on MNIST in a few epochs
    hidden: int = 128
    mlp_hidden: tuple[int, ...] = (512, 512)
    epochs: int = 3

    def __post_init__(self):
        if self.arch not in ("auto", "cnn", "mlp"):
            raise ValueError(f"TeacherConfig.arch must be 'auto', 'cnn' or 'mlp', got {self.arch!r}")
        self.channels = tuple(self.channels)
        self.mlp_hidden = tuple(self.mlp_hidden)
        if len(self.channels) != 2 or min(self.channels) < 1 or self.hidden < 1 or min(self.mlp_hidden, default=1) < 1:
            raise ValueError(f"TeacherConfig needs 2 positive channels and positive hidden sizes, got "
                             f"channels={self.channels}, hidden={self.hidden}, mlp_hidden={self.mlp_hidden}")
        super().__post_init__()


def _is_square_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[1] == shape[2] and shape[1] >= 4


def build_teacher(dataset: Dataset, config: TeacherConfig) -> nn.Module:
    """An untrained teacher for `dataset`, normalising inputs with the training set's mean and std."""
    shape = dataset.input_shape
    mean, std = dataset.x_train.mean().item(), dataset.x_train.std().item()
    std = std if std > 0 else 1.0
    arch = config.arch if config.arch != "auto" else ("cnn" if _is_square_image(shape) else "mlp")
    if arch == "cnn":
        if not _is_square_image(shape):
            raise ValueError(f"TeacherConfig(arch='cnn') needs square image inputs (C, H, H) with H >= 4, "
                             f"got input shape {shape}; use arch='mlp'")
        return MnistCNN(config.channels, config.hidden, dataset.num_classes, in_channels=shape[0],
                        image_size=shape[1], mean=mean, std=std)
    return MLP(math.prod(shape), config.mlp_hidden, dataset.num_classes, mean=mean, std=std)


def train_teacher(dataset: Dataset, config: TeacherConfig | None = None, *, progress: str | None = None) -> nn.Module:
    """Train a fresh teacher on the full training set of `dataset` (eval mode on return)."""
    config = config or TeacherConfig()
    check_inputs(dataset.x_train, dataset.y_train, dataset.num_classes)
    torch.manual_seed(config.seed)  # weight init
    model = build_teacher(dataset, config)
    fit(model, dataset.x_train, dataset.y_train, **config.fit_kwargs(), progress=progress)
    return model.eval()


def _find_spec(weights: Path) -> dict | None:
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
    if "spec" in meta:
        return json.loads(meta["spec"])
    for name in (*SPEC_FILES, f"{weights.stem}.json", f"{weights.stem}.spec.json"):
        candidate = weights.parent / name
        if candidate.is_file():
            data = json.loads(candidate.read_text())
            return data.get("spec", data) if isinstance(data, dict) else None
    return None


def load_teacher(path: str | Path, spec: dict | None = None) -> nn.Module:
    """A user's teacher: `path` is a folder with `model.safetensors` and `spec.json`, or a `.safetensors`
    file whose spec is passed as `spec`, stored in its metadata under "spec", or in a sibling JSON file."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise FileNotFoundError(f"teacher weights {weights} not found; pass a folder with {WEIGHTS_FILE} and "
                                f"spec.json, or the path of a .safetensors state dict")
    try:
        state = load_file(str(weights), device="cpu")
        spec = spec if spec is not None else _find_spec(weights)
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise TeacherError(f"cannot read teacher {weights}: {err}; it must be a safetensors state dict") from err
    if spec is None:
        raise TeacherError(f"no model spec for teacher {weights}: write it as {weights.parent / 'spec.json'} "
                           "(e.g. {\"arch\": \"mnist_cnn\", ...}, see compress.models.model_spec) or pass spec=")
    model = build_model(spec)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise TeacherError(f"teacher weights {weights} do not fit the spec {spec}: {err}") from err
    return model.eval()


@torch.no_grad()
def check_teacher(teacher: nn.Module, dataset: Dataset) -> None:
    """Raise TeacherError unless `teacher` maps one training input to `dataset.num_classes` finite logits."""
    try:
        with eval_mode(teacher):
            device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
            out = teacher(dataset.x_train[:2].to(device))
    except RuntimeError as err:
        raise TeacherError(f"teacher cannot take inputs of shape {dataset.input_shape} from dataset "
                           f"{dataset.name!r}: {err}") from err
    if out.ndim != 2 or out.shape[1] != dataset.num_classes:
        raise TeacherError(f"teacher outputs shape {tuple(out.shape[1:])} per input but dataset {dataset.name!r} "
                           f"has {dataset.num_classes} classes; use a teacher with {dataset.num_classes} outputs")
