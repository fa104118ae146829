"""One supervised training loop shared by teacher training, distillation, scratch baselines and
pruning fine-tunes, so every arm of an experiment runs the same optimiser, batches and seed.

Techniques plug in through two hooks rather than copies of the loop:
- `loss_fn(logits, y, idx)` replaces cross-entropy (distillation uses it to look up soft labels by
  the batch's sample indices `idx`);
- `after_step(model)` runs after every optimiser step (pruning uses it to re-apply masks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from compress.config import CompressConfig
from compress.data import all_finite

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FitConfig(CompressConfig):
    """Optimiser settings of one `fit` run; the technique configs that train (KDConfig, TeacherConfig)
    inherit them, so every arm of an experiment is set up, validated and recorded the same way."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0

    def __post_init__(self):
        name = type(self).__name__
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"{name} needs epochs >= 1 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"{name} needs lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"{name}.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")

    def fit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `fit` that this config sets."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "optimizer": self.optimizer, "weight_decay": self.weight_decay}


@dataclass
class FitReport:
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else math.nan


def check_inputs(x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> None:
    """Refuse data a training run would silently mis-handle; raises ValueError naming the problem."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; they must match")
    if x.shape[0] == 0:
        raise ValueError("training set is empty; pass at least one sample")
    if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"y must be a 1-D integer class tensor, got shape {tuple(y.shape)} dtype {y.dtype}")
    if not all_finite(x):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"x contains NaN or inf (first bad samples: {bad}); clean or drop them before training")
    if num_classes is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got range [{int(y.min())}, {int(y.max())}]")


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected 'adam' or 'sgd'")


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int = 128,
        lr: float = 1e-3, seed: int = 0, optimizer: str = "adam", weight_decay: float = 0.0,
        loss_fn: LossFn | None = None, after_step: Callable[[nn.Module], None] | None = None,
        progress: str | None = None) -> FitReport:
    """Train `model` in place on (x, y) with seeded shuffling; returns per-epoch mean losses.

    x: (N, ...) float inputs, y: (N,) int labels. `progress` is a label for a tqdm bar (None: quiet).
    """
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    check_inputs(x, y)
    loss_fn = loss_fn or (lambda logits, yb, idx: F.cross_entropy(logits, yb))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    opt = make_optimizer(model, optimizer, lr, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    report = FitReport()
    n = x.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    bar = tqdm(total=steps, desc=progress, disable=progress is None, leave=False, unit="step")
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            loss = loss_fn(model(xb), yb, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(idx)
            bar.update(1)
        report.epoch_losses.append(total / n)
        bar.set_postfix(loss=f"{report.epoch_losses[-1]:.4f}")
    report.seconds = time.perf_counter() - start
    report.samples = epochs * n
    bar.close()
    model.eval()
    return report
