"""Knowledge distillation and its from-scratch baseline, both through the shared `compress.train.fit`.

Hinton, Vinyals & Dean 2015: train the student on the teacher's temperature-softened outputs
(`losses.kd_loss`). `distill` and `train_scratch` take the same `KDConfig`, so both arms of an
experiment run the same optimiser, learning rate, epochs, batch order (seeded) and, via
`make_student(spec, seed)`, the same initial weights; only the loss differs. Build a FRESH student for
every run: reusing one across runs or sample sizes leaks training from one arm into the next.

Example:
    student = make_student({"arch": "mlp", "in_features": 784, "hidden": [128], "num_classes": 10}, seed=0)
    report = distill(student, x, y, teacher_logits, KDConfig(temperature=20.0, alpha=0.1, epochs=20))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.data import UNLABELLED, all_finite
from compress.distill.losses import kd_loss
from compress.models import build_model, eval_mode
from compress.train import FitConfig, FitReport, fit


@dataclass
class KDConfig(FitConfig):
    """Distillation on top of the shared optimiser settings (FitConfig: epochs, batch_size, lr, seed, ...)."""

    temperature: float = 20.0  # Hinton's MNIST value; best of {4, 20, 50} within 0.6 pt on our MNIST validation
    alpha: float = 0.1  # weight of the hard-label CE; the paper found a small hard weight best
    epochs: int = 20

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"KDConfig.temperature must be > 0, got {self.temperature} (try 2-20)")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"KDConfig.alpha (hard-label weight) must lie in [0, 1], got {self.alpha}")
        super().__post_init__()


def make_student(spec: dict[str, Any], seed: int = 0) -> nn.Module:
    """A freshly initialised student built from `spec`; the same seed gives the same initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec)


@torch.no_grad()
def _output_size(student: nn.Module, x: torch.Tensor) -> int:
    try:
        with eval_mode(student):
            device = next((p.device for p in student.parameters()), torch.device("cpu"))
            out = student(x[:2].to(device))
    except RuntimeError as err:
        raise ValueError(f"student cannot take inputs of shape {tuple(x.shape[1:])}: {err}") from err
    if out.ndim != 2:
        raise ValueError(f"student must output (B, C) logits, got shape {tuple(out.shape)}")
    return out.shape[1]


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    """The cheap part of `compress.train.check_inputs` (which `fit` runs anyway, NaN scan included,
    before its first step): shapes and label dtype, needed before we look at label values."""
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (N, ...), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must be a 1-D integer class tensor with {x.shape[0]} rows (one per input), got "
                         f"shape {tuple(y.shape)} dtype {y.dtype}")


def _check_labels(y: torch.Tensor, num_classes: int, *, allow_unlabelled: bool) -> None:
    low = UNLABELLED if allow_unlabelled else 0
    bad = ((y < 0) & (y != low)) | (y >= num_classes)
    if bad.any():
        first = bad.nonzero().flatten()[:5].tolist()
        hint = f" (or {UNLABELLED} for unlabelled transfer inputs)" if allow_unlabelled else ""
        raise ValueError(f"labels must lie in [0, {num_classes - 1}]{hint}; rows {first} hold "
                         f"{y[first].tolist()}")


def distill(student: nn.Module, x: torch.Tensor, y: torch.Tensor | None, teacher_logits: torch.Tensor,
            config: KDConfig, *, progress: str | None = None) -> FitReport:
    """Train `student` in place on (x, teacher_logits[, y]) with `kd_loss`.

    x: (N, ...) inputs, teacher_logits: (N, C) from `soft_labels`, y: (N,) labels in [0, C) or
    UNLABELLED for transfer-set rows; y=None means no labels (needs alpha == 0). Everything is
    validated before the first step.
    """
    if teacher_logits.ndim != 2 or teacher_logits.shape[0] != x.shape[0]:
        raise ValueError(f"teacher_logits must be (N, C) with N={x.shape[0]} (one row per input), got "
                         f"{tuple(teacher_logits.shape)}")
    if not all_finite(teacher_logits):
        raise ValueError("teacher_logits contain NaN or inf; regenerate the soft labels")
    if y is None:
        if config.alpha > 0:
            raise ValueError(f"distill without labels needs alpha=0, got alpha={config.alpha}")
        y = torch.full((x.shape[0],), UNLABELLED, dtype=torch.int64)
    _check_xy(x, y)
    num_classes = teacher_logits.shape[1]
    out = _output_size(student, x)
    if out != num_classes:
        raise ValueError(f"student outputs {out} classes but the teacher's soft labels have {num_classes}; "
                         f"build the student with num_classes={num_classes}")
    _check_labels(y, num_classes, allow_unlabelled=True)
    if config.alpha > 0 and not (y != UNLABELLED).any():
        raise ValueError(f"alpha={config.alpha} weights hard labels, but every row is unlabelled; set alpha=0")
    device = next((p.device for p in student.parameters()), torch.device("cpu"))
    targets = teacher_logits.detach().float().to(device)  # (N, C), indexed per batch

    def loss_fn(logits: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return kd_loss(logits, targets[idx.to(device)], yb, temperature=config.temperature, alpha=config.alpha)

    return fit(student, x, y, **config.fit_kwargs(), loss_fn=loss_fn, progress=progress)


def train_scratch(student: nn.Module, x: torch.Tensor, y: torch.Tensor, config: KDConfig, *,
                  progress: str | None = None) -> FitReport:
    """The baseline arm: the same loop, optimiser, epochs and batch order as `distill`, on hard labels
    only (temperature and alpha are ignored)."""
    _check_xy(x, y)
    _check_labels(y, _output_size(student, x), allow_unlabelled=False)
    return fit(student, x, y, **config.fit_kwargs(),
               loss_fn=lambda logits, yb, idx: F.cross_entropy(logits, yb), progress=progress)
