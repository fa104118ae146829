"""`prune_(model, config)`: one round of unstructured pruning, torchao style (one verb, many configs).

- `PQIPruneConfig`: sparsity-informed adaptive pruning (SAP) of Diao et al., ICLR 2023
  (arXiv 2302.05601). Each round measures the PQ Index of the surviving weights and prunes
  `floor(d * clamp(gamma * (1 - r/d), 0, beta))` smallest-magnitude ones, r being the PQI retain bound.
- `MagnitudePruneConfig`: prune a fixed fraction `amount` of the surviving weights by magnitude
  (the lottery-ticket / one-shot baselines of the paper use amount=0.2, scope="global").

Scopes: "global" (one decision over all prunable weights), "layer" (per weight tensor), "neuron"
(per output row of a weight reshaped to (out, -1)). Works on any torch model; see `masks.py` for
what is prunable. Sample recipe stage (YAML):

    prune: {type: PQIPruneConfig, p: 0.5, q: 1.0, eta: 0.0, gamma: 1.0, beta: 0.9, scope: layer}
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from compress.config import CompressConfig
from compress.prune.masks import Masks, apply_masks_, check_masks, masks_from_weights, require_prunable
from compress.prune.pq_index import num_to_prune, pq_index, prune_ratio

SCOPES = ("global", "layer", "neuron")


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def _check_ignore(ignore: Any) -> tuple[str, ...]:
    if isinstance(ignore, str) or not all(isinstance(p, str) for p in ignore):
        raise ValueError(f"ignore must be a list of module-name patterns like ['lm_head'], got {ignore!r}")
    return tuple(ignore)


@dataclass
class PQIPruneConfig(CompressConfig):
    """SAP: p < q pick the PQ Index; eta >= 0 and gamma > 0 make pruning more conservative/aggressive;
    beta in (0, 1) caps the fraction pruned per round. ignore: module-name patterns left dense."""

    p: float = 0.5  # the paper's default pair (p, q) = (0.5, 1): one round keeps exactly 1 - PQI
    q: float = 1.0
    eta: float = 0.0
    gamma: float = 1.0
    beta: float = 0.9  # never prune more than 90% of a scope's survivors in one round
    scope: Literal["global", "layer", "neuron"] = "layer"
    ignore: tuple[str, ...] = ()

    def __post_init__(self):
        if not (math.isfinite(self.p) and math.isfinite(self.q) and 0 < self.p < self.q):
            raise ValueError(f"PQIPruneConfig needs 0 < p < q, got p={self.p}, q={self.q}; "
                             "use e.g. p=0.5, q=1.0 (p must be smaller than q)")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"PQIPruneConfig.eta must be a finite number >= 0, got {self.eta}; use 0.0 for the "
                             "plain bound or a small value such as 0.001 to prune less")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"PQIPruneConfig.gamma must be > 0, got {self.gamma}; use 1.0 (paper default) or "
                             "a value > 1 to prune more per round")
        if not 0 < self.beta < 1:
            raise ValueError(f"PQIPruneConfig.beta must lie strictly between 0 and 1 (max fraction pruned per "
                             f"round), got {self.beta}; use e.g. 0.9")
        _check_scope(self.scope)
        self.ignore = _check_ignore(self.ignore)


@dataclass
class MagnitudePruneConfig(CompressConfig):
    """Prune `amount` (a fraction in (0, 1)) of the surviving weights with the smallest magnitude."""

    amount: float = 0.2  # the lottery-ticket rate: 20% of the remaining weights per round
    scope: Literal["global", "layer", "neuron"] = "global"
    ignore: tuple[str, ...] = ()

    def __post_init__(self):
        if not 0 <= self.amount < 1:
            raise ValueError(f"MagnitudePruneConfig.amount is the fraction of surviving weights to prune and must "
                             f"lie in [0, 1), got {self.amount}; use e.g. 0.2")
        _check_scope(self.scope)
        self.ignore = _check_ignore(self.ignore)


@dataclass
class LayerPruneStats:
    name: str
    shape: tuple[int, ...]
    kept_before: int
    kept_after: int
    pqi: float  # PQI of the layer's surviving weights before this round (p, q of the config; 0.5, 1 for magnitude)
    pqi_neuron_mean: float | None = None  # mean per-row PQI (neuron scope only)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def retained_fraction(self) -> float:
        return self.kept_after / self.numel if self.numel else 1.0


@dataclass
class PruneReport:
    config: dict[str, Any]
    layers: list[LayerPruneStats]
    masks: Masks = field(repr=False)
    pqi_global: float = 0.0  # PQI over all prunable surviving weights before this round

    @property
    def retained_fraction(self) -> float:
        total = sum(s.numel for s in self.layers)
        return sum(s.kept_after for s in self.layers) / total if total else 1.0

    @property
    def metrics(self) -> dict[str, float]:
        out = {"retained_fraction": self.retained_fraction, "pqi_global": self.pqi_global,
               "pruned_weights": float(sum(s.kept_before - s.kept_after for s in self.layers))}
        for s in self.layers:
            out[f"pqi.{s.name}"] = s.pqi
            out[f"retained.{s.name}"] = s.retained_fraction
        return out

    def to_dict(self) -> dict[str, Any]:
        layers = [{**dataclasses.asdict(s), "shape": list(s.shape), "retained_fraction": s.retained_fraction}
                  for s in self.layers]
        return {"config": self.config, "retained_fraction": self.retained_fraction,
                "pqi_global": self.pqi_global, "layers": layers}


def _prune_smallest(a: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """New mask with the n smallest surviving entries of |a| (flat) removed."""
    if n <= 0:
        return mask.clone()
    scores = torch.where(mask, a, torch.full_like(a, math.inf)).reshape(-1)
    idx = torch.topk(scores, n, largest=False, sorted=False).indices
    new = mask.clone().reshape(-1)
    new[idx] = False
    return new.reshape(mask.shape)


def _prune_rows(a: torch.Tensor, mask: torch.Tensor, n_rows: torch.Tensor) -> torch.Tensor:
    """a, mask: (out, k); n_rows: (out,) -> mask with n_rows[i] smallest survivors of row i removed."""
    scores = torch.where(mask, a, torch.full_like(a, math.inf))
    order = torch.argsort(scores, dim=1, stable=True)  # survivors first, smallest first
    cut = torch.arange(a.shape[1], device=a.device)[None, :] < n_rows.to(a.device)[:, None]  # (out, k)
    pruned = torch.zeros_like(mask).scatter_(1, order, cut)
    return mask & ~pruned


def _row_counts(kind: str, cfg, a2: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    d = m2.sum(1)
    if kind == "pqi":
        rows_pqi = pq_index(a2, cfg.p, cfg.q, mask=m2, dim=1)
        ratio = prune_ratio(d, rows_pqi, cfg.p, cfg.q, cfg.eta, cfg.gamma, cfg.beta)
    else:
        ratio = torch.full(d.shape, cfg.amount, dtype=torch.float64)
    return num_to_prune(d, ratio.to(d.device))


def _count(kind: str, cfg, d: int, pqi: torch.Tensor) -> int:
    if kind == "pqi":
        return int(num_to_prune(d, prune_ratio(d, pqi, cfg.p, cfg.q, cfg.eta, cfg.gamma, cfg.beta)))
    return int(num_to_prune(d, cfg.amount))


def _prune(model: nn.Module, cfg, masks: Masks | None, kind: str) -> PruneReport:
    weights = require_prunable(model, cfg.ignore)
    masks = {k: v.to(weights[k].device) for k, v in masks.items()} if masks is not None else None
    masks = masks_from_weights(weights) if masks is None else masks
    check_masks(weights, masks)
    p, q = (cfg.p, cfg.q) if kind == "pqi" else (0.5, 1.0)
    abs_w = {n: w.detach().abs() for n, w in weights.items()}
    layer_pqi = {n: float(pq_index(abs_w[n], p, q, mask=masks[n])) for n in weights}
    flat_a = torch.cat([abs_w[n].reshape(-1).to("cpu", torch.float32) for n in weights])
    flat_m = torch.cat([masks[n].reshape(-1).cpu() for n in weights])
    pqi_all = pq_index(flat_a, p, q, mask=flat_m)
    new: Masks = {}
    neuron_mean: dict[str, float] = {}
    if cfg.scope == "global":
        flat_new = _prune_smallest(flat_a, flat_m, _count(kind, cfg, int(flat_m.sum()), pqi_all))
        for n, part in zip(weights, torch.split(flat_new, [w.numel() for w in weights.values()]), strict=True):
            new[n] = part.reshape(weights[n].shape).to(weights[n].device)
    else:
        for n in weights:
            a, m = abs_w[n], masks[n]
            if cfg.scope == "layer":
                new[n] = _prune_smallest(a, m, _count(kind, cfg, int(m.sum()), torch.tensor(layer_pqi[n])))
            else:  # neuron: one decision per output row of (out, -1)
                a2, m2 = a.reshape(a.shape[0], -1), m.reshape(m.shape[0], -1)
                if kind == "pqi":
                    neuron_mean[n] = float(pq_index(a2, p, q, mask=m2, dim=1).mean())
                new[n] = _prune_rows(a2, m2, _row_counts(kind, cfg, a2, m2)).reshape(a.shape)
    apply_masks_(model, new)
    layers = [LayerPruneStats(n, tuple(w.shape), int(masks[n].sum()), int(new[n].sum()), layer_pqi[n],
                              neuron_mean.get(n)) for n, w in weights.items()]
    return PruneReport(config=cfg.to_dict(), layers=layers, masks=new, pqi_global=float(pqi_all))


def _register() -> None:
    from compress.techniques import PruneTechnique, register_pruner

    register_pruner(PruneTechnique(
        name="sap", config=PQIPruneConfig, apply=lambda model, cfg, masks=None: _prune(model, cfg, masks, "pqi"),
        module=__name__, description="sparsity-informed adaptive pruning by the PQ Index (Diao et al. 2023)"))
    register_pruner(PruneTechnique(
        name="magnitude", config=MagnitudePruneConfig,
        apply=lambda model, cfg, masks=None: _prune(model, cfg, masks, "magnitude"),
        module=__name__, description="a fixed fraction of the surviving weights, smallest magnitude first"))


_register()


@torch.no_grad()
def prune_(model: nn.Module, config: PQIPruneConfig | MagnitudePruneConfig, masks: Masks | None = None) -> PruneReport:
    """Prune `model` in place by one round of `config`; returns the report with the new masks.

    masks: the survivors so far (`report.masks` of the previous round). None treats exactly-zero
    weights as already pruned, so calling `prune_` repeatedly on the same model also works.
    """
    from compress.techniques import PRUNERS, load_all

    load_all()
    for technique in PRUNERS.values():
        if type(config) is technique.config:
            return technique.apply(model, config, masks)
    raise TypeError(f"prune_ got a {type(config).__name__}; expected one of "
                    f"{sorted(t.config.__name__ for t in PRUNERS.values())}")
