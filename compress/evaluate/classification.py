"""Classification metrics: accuracy, agreement with the teacher and KL divergence to the teacher.

Agreement is 1 - consistency loss: the fraction of inputs on which student and teacher predict the
same class. KL is KL(teacher || student) at temperature T, averaged over inputs, in nats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compress.models import eval_mode


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{name} must be (N, classes), got shape {tuple(logits.shape)}")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of `model` on `x` in eval mode, batched; returns float32 on CPU, (N, classes)."""
    with eval_mode(model):
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        outs = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, 0)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    _check_logits("logits", logits)
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be (N,) with N={logits.shape[0]}, got shape {tuple(labels.shape)}")
    return (logits.argmax(1) == labels).float().mean().item()


def agreement(logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Fraction of inputs where argmax(student) == argmax(teacher) (1 - consistency loss)."""
    _check_logits("logits", logits)
    if logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    return (logits.argmax(1) == teacher_logits.argmax(1)).float().mean().item()


def kl_to_teacher(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean over inputs of KL(softmax(t/T) || softmax(s/T)) in nats."""
    if logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    log_s = F.log_softmax(logits.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean").item()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor,
                           teacher_logits: torch.Tensor | None = None) -> dict[str, float]:
    """accuracy, and with a teacher also agreement and kl_to_teacher."""
    out = {"accuracy": accuracy(logits, labels)}
    if teacher_logits is not None:
        out["agreement"] = agreement(logits, teacher_logits)
        out["kl_to_teacher"] = kl_to_teacher(logits, teacher_logits)
    return out
