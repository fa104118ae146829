"""Distillation losses as pure tensor functions (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

    kd_loss = (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T)) + alpha * CE(s, y)

t: teacher logits, s: student logits, y: hard labels. KL is summed over classes and averaged over the
batch. The T^2 factor keeps the soft term's gradient magnitude roughly independent of T (the paper,
section 2), so alpha means the same thing at every temperature. Rows labelled `UNLABELLED` (-1) are
transfer-set inputs without ground truth: they feed the soft term only, and the hard term averages
over the labelled rows of the batch (0 when the batch has none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compress.data import UNLABELLED


def soft_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean over rows of KL(softmax(t/T) || softmax(s/T)); a scalar."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)  # (B, C)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)  # (B, C)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature ** 2


def hard_term(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the rows whose label is not UNLABELLED (0 if there are none)."""
    total = F.cross_entropy(student_logits, labels, ignore_index=UNLABELLED, reduction="sum")
    return total / (labels != UNLABELLED).sum().clamp(min=1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None, *,
            temperature: float, alpha: float) -> torch.Tensor:
    """(1 - alpha) * soft_term + alpha * hard_term. labels may be None when alpha == 0."""
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must both be (B, C) with the same shape")
    if not temperature > 0 or not 0 <= alpha <= 1:
        raise ValueError(f"kd_loss needs temperature > 0 and 0 <= alpha <= 1, got {temperature}, {alpha}")
    loss = soft_term(student_logits, teacher_logits.detach(), temperature) if alpha < 1 else None
    if alpha == 0:
        return loss
    if labels is None:
        raise ValueError(f"kd_loss with alpha={alpha} > 0 needs hard labels; pass labels or set alpha=0")
    hard = hard_term(student_logits, labels)
    return hard if loss is None else (1 - alpha) * loss + alpha * hard
