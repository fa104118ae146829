"""Iterative pruning schedules: SAP rounds, the lottery-ticket baseline and one-shot magnitude pruning.

Diao et al. (ICLR 2023, Algorithm 1): for t = 1..T, train E epochs, measure the PQ Index of the
survivors, prune, and either rewind the survivors to their initial values (lottery-ticket style,
Frankle & Carbin 2019) or keep fine-tuning. Here round 0 trains the dense model and round t
prunes the trained weights of round t-1, optionally rewinds, then trains E epochs, so every
reported accuracy belongs to a trained model at the reported sparsity.

- SAP: `iterative_prune(..., config=PQIPruneConfig(...))`.
- Lottery ticket: `iterative_prune(..., config=MagnitudePruneConfig(0.2, "global"), rewind=True)`.
- One-shot magnitude: `one_shot_curve(...)` prunes the trained dense model straight to each target
  fraction (global magnitude), then rewinds/fine-tunes and trains E epochs, once per target.

Training goes through `compress.train.fit` with `after_step` re-applying the masks and gradient
hooks zeroing the pruned weights' gradients, so pruned weights stay exactly zero.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compress.prune.api import MagnitudePruneConfig, PQIPruneConfig, PruneReport, prune_
from compress.prune.masks import Masks, apply_masks_, keep_masked, mask_gradients_, require_prunable
from compress.train import fit

EvalFn = Callable[[nn.Module], "float | dict[str, float]"]


@dataclass
class RoundReport:
    round: int
    retained_fraction: float  # surviving fraction of all prunable weights after this round's pruning
    metrics: dict[str, float]  # from eval_fn after training ({"accuracy": ...} when it returns a float)
    prune: PruneReport | None  # None for round 0 (dense training)
    train_seconds: float
    train_loss: float

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "retained_fraction": self.retained_fraction, "metrics": self.metrics,
                "train_seconds": self.train_seconds, "train_loss": self.train_loss,
                "prune": self.prune.to_dict() if self.prune else None}


def _evaluate(model: nn.Module, eval_fn: EvalFn | None) -> dict[str, float]:
    if eval_fn is None:
        return {}
    out = eval_fn(model)
    return {"accuracy": float(out)} if isinstance(out, (int, float)) else {k: float(v) for k, v in out.items()}


def _train_round(model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: Masks, *, round_: int, epochs: int,
                 fit_kwargs: dict[str, Any], eval_fn: EvalFn | None, prune: PruneReport | None) -> RoundReport:
    kwargs = dict(fit_kwargs)
    kwargs["seed"] = kwargs.get("seed", 0) + round_  # fresh shuffles each round, reproducible
    apply_masks_(model, masks)
    handles = mask_gradients_(model, masks)
    try:
        fit_report = fit(model, x, y, epochs=epochs, after_step=keep_masked(masks), **kwargs)
    finally:
        for h in handles:
            h.remove()
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    loss = fit_report.epoch_losses[-1] if fit_report.epoch_losses else float("nan")
    return RoundReport(round_, kept / total, _evaluate(model, eval_fn), prune, fit_report.seconds, loss)


def _check_schedule(rounds: int, epochs: int, fit_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    if rounds < 0 or epochs < 0:
        raise ValueError(f"need rounds >= 0 and epochs >= 0, got rounds={rounds}, epochs={epochs}")
    fit_kwargs = dict(fit_kwargs or {})
    clash = {"epochs", "after_step"} & set(fit_kwargs)
    if clash:
        raise ValueError(f"fit_kwargs must not set {sorted(clash)}: the schedule sets them; pass epochs= instead")
    return fit_kwargs


def iterative_prune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    config: PQIPruneConfig | MagnitudePruneConfig, rounds: int, epochs: int, rewind: bool,
                    eval_fn: EvalFn | None = None, fit_kwargs: dict[str, Any] | None = None) -> list[RoundReport]:
    """Train dense (round 0), then `rounds` times: prune by `config`, optionally rewind, train `epochs`.

    Returns rounds + 1 reports; `model` ends pruned and trained (report[-1].prune.masks are its masks).
    fit_kwargs go to `compress.train.fit` (batch_size, lr, seed, optimizer, ...).
    """
    fit_kwargs = _check_schedule(rounds, epochs, fit_kwargs)
    weights = require_prunable(model, config.ignore)
    init_state = copy.deepcopy(model.state_dict()) if rewind else None
    masks: Masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    reports = [_train_round(model, x, y, masks, round_=0, epochs=epochs, fit_kwargs=fit_kwargs,
                            eval_fn=eval_fn, prune=None)]
    for t in range(1, rounds + 1):
        pruned = prune_(model, config, masks)
        masks = pruned.masks
        if init_state is not None:
            model.load_state_dict(init_state)
        reports.append(_train_round(model, x, y, masks, round_=t, epochs=epochs, fit_kwargs=fit_kwargs,
                                    eval_fn=eval_fn, prune=pruned))
    return reports


def one_shot_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, retained: Sequence[float], epochs: int,
                   rewind: bool = True, scope: str = "global", eval_fn: EvalFn | None = None,
                   fit_kwargs: dict[str, Any] | None = None) -> list[RoundReport]:
    """One-shot magnitude baseline: train dense once, then for each target fraction in `retained`
    prune the *dense trained* weights straight to it, rewind (or fine-tune) and train `epochs`.

    Returns len(retained) + 1 reports (index 0 dense); `model` ends at the last target.
    """
    fit_kwargs = _check_schedule(len(retained), epochs, fit_kwargs)
    bad = [r for r in retained if not 0 < r <= 1]
    if bad:
        raise ValueError(f"retained fractions must lie in (0, 1], got {bad}")
    weights = require_prunable(model)
    init_state = copy.deepcopy(model.state_dict())
    full: Masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    reports = [_train_round(model, x, y, full, round_=0, epochs=epochs, fit_kwargs=fit_kwargs,
                            eval_fn=eval_fn, prune=None)]
    dense_state = copy.deepcopy(model.state_dict())
    for t, level in enumerate(retained, start=1):
        model.load_state_dict(dense_state)
        pruned = prune_(model, MagnitudePruneConfig(amount=1.0 - level, scope=scope), full)
        if rewind:
            model.load_state_dict(init_state)
        reports.append(_train_round(model, x, y, pruned.masks, round_=t, epochs=epochs, fit_kwargs=fit_kwargs,
                                    eval_fn=eval_fn, prune=pruned))
    return reports
