"""One seeded training loop for transformers sequence classifiers: teacher fine-tuning, hard-label
students, KD students and post-pruning recovery all run it, so every arm of an experiment shares the
optimiser (AdamW), schedule (linear warm-up 10% then linear decay), batches and seed.

Losses: cross-entropy on hard labels; with `teacher_logits`, the classification path's KD loss
(`compress.distill.losses.kd_loss`: (1-alpha) T^2 KL + alpha CE, Hinton et al. 2015); with a `teacher`
model and `hidden_weight` > 0, plus DistilBERT's cosine term on hidden states (Sanh et al. 2019):
1 - cos(student layer j, teacher layer keep[j]) averaged over real tokens.

Inputs are tokenized once (`encode`) and each batch is trimmed to its longest sequence.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.distill.losses import kd_loss
from compress.models import eval_mode


def encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token tensors (N, L) padded to the longest text (at most `max_length` tokens)."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def batch_of(enc: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows `idx` of `enc`, trimmed to the longest sequence among them."""
    mask = enc["attention_mask"][idx]
    length = int(mask.sum(1).max())
    return {k: v[idx, :length] for k, v in enc.items()}


def predict_logits(model: nn.Module, enc: dict[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    n = enc["input_ids"].shape[0]
    out = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            out.append(model(**batch_of(enc, idx)).logits.float())
    return torch.cat(out) if out else torch.empty(0)


@dataclasses.dataclass
class TrainSettings:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    seed: int = 0
    max_steps: int | None = None       # stop early (benchmarks, tests)
    weight_decay: float = 0.01
    temperature: float = 2.0
    alpha: float = 0.5                 # weight of the hard-label term when teacher logits are given
    hidden_weight: float = 0.0         # DistilBERT cosine term on hidden states (needs `teacher`)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {self.epochs}, {self.batch_size}, "
                             f"{self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")


def hidden_cosine(student_out: Any, teacher_out: Any, keep: list[int], mask: torch.Tensor) -> torch.Tensor:
    """Mean over kept layers and real tokens of 1 - cos(student hidden, teacher hidden)."""
    m = mask.bool()
    losses = []
    for j, t_layer in enumerate(keep):
        s_h, t_h = student_out.hidden_states[j + 1], teacher_out.hidden_states[t_layer + 1]  # (B, L, H)
        losses.append((1 - F.cosine_similarity(s_h[m], t_h[m], dim=-1)).mean())
    return torch.stack(losses).mean()


def _loss(model, batch, y, idx, settings, teacher_logits, teacher, keep) -> torch.Tensor:
    use_hidden = teacher is not None and settings.hidden_weight > 0
    out = model(**batch, output_hidden_states=use_hidden)
    if teacher_logits is not None:
        loss = kd_loss(out.logits, teacher_logits[idx], y, temperature=settings.temperature, alpha=settings.alpha)
    else:
        loss = F.cross_entropy(out.logits, y)
    if use_hidden:
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=True)
        loss = loss + settings.hidden_weight * hidden_cosine(out, t_out, keep, batch["attention_mask"])
    return loss


def train_classifier(model: nn.Module, enc: dict[str, torch.Tensor], labels: torch.Tensor, settings: TrainSettings,
                     *, teacher_logits: torch.Tensor | None = None, teacher: nn.Module | None = None,
                     keep: list[int] | None = None) -> dict[str, float]:
    """Train `model` in place; returns {"train_loss", "train_steps", "train_seconds"}."""
    n = labels.shape[0]
    if teacher_logits is not None and teacher_logits.shape[0] != n:
        raise ValueError(f"teacher logits have {teacher_logits.shape[0]} rows for {n} training texts; "
                         "rerun the teacher_data stage on this dataset")
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = min(settings.epochs * steps_per_epoch, settings.max_steps or 10**12)
    decay = [p for name, p in model.named_parameters() if p.ndim > 1]
    rest = [p for name, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=settings.lr)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm + 1))))
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    if teacher is not None:
        teacher.eval()
    model.train()
    step, losses, start = 0, [], time.perf_counter()
    while step < total:
        for idx in torch.randperm(n, generator=gen).split(settings.batch_size):
            loss = _loss(model, batch_of(enc, idx), labels[idx], idx, settings, teacher_logits, teacher,
                         keep or [])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            step += 1
            if step >= total:
                break
    model.eval()
    tail = losses[-max(1, steps_per_epoch):]
    return {"train_loss": sum(tail) / len(tail), "train_steps": float(step),
            "train_seconds": time.perf_counter() - start}
