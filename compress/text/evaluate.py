"""Quality and speed of a text classifier: accuracy, macro-F1, agreement and KL with the teacher, latency
p50/p95 at batch 1 and batch 32, sequences per second, parameters and bytes.

Latency runs real tokenized test texts (the first `batch` of them, trimmed to their longest sequence),
with warm-up and a fixed number of timed calls (compress.evaluate.system.latency); threads are whatever
torch is set to, so compare models side by side in one process.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.evaluate.classification import classification_metrics
from compress.evaluate.system import latency, model_size
from compress.text.train import batch_of, predict_logits


def macro_f1(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean over classes of F1; a class absent from both predictions and labels is skipped."""
    pred = logits.argmax(1)
    scores = []
    for c in range(num_classes):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def quality(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
            teacher_logits: torch.Tensor | None = None) -> dict[str, float]:
    out = classification_metrics(logits, labels, teacher_logits)
    out["macro_f1"] = macro_f1(logits, labels, num_classes)
    return out


def speed(model: nn.Module, enc: dict[str, torch.Tensor], *, batch_sizes: tuple[int, ...] = (1, 32),
          warmup: int = 2, iters: int = 10) -> dict[str, float]:
    """latency_b{B}_p50_ms / _p95_ms and seqs_per_s_b{B} for each batch size B."""
    n = enc["input_ids"].shape[0]
    out: dict[str, float] = {}
    model.eval()
    for b in batch_sizes:
        batch = batch_of(enc, torch.arange(min(b, n)))

        def run(batch=batch):
            with torch.inference_mode():
                model(**batch)
        t = latency(run, warmup=warmup, iters=iters)
        out[f"latency_b{b}_p50_ms"], out[f"latency_b{b}_p95_ms"] = t["p50_ms"], t["p95_ms"]
        out[f"seqs_per_s_b{b}"] = batch["input_ids"].shape[0] / (t["p50_ms"] / 1e3)
    return out


def evaluate_classifier(model: nn.Module, enc: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int,
                        *, teacher_logits: torch.Tensor | None = None, timing: bool = True,
                        iters: int = 10) -> dict[str, float]:
    logits = predict_logits(model, enc)
    out = quality(logits, labels, num_classes, teacher_logits)
    size = model_size(model)
    out["params"], out["weight_bytes"] = float(size.params), float(size.bytes)
    if timing:
        out.update(speed(model, enc, iters=iters))
    return out
