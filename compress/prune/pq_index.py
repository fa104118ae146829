"""PQ Index (PQI) and the sparsity-informed adaptive pruning (SAP) retain bound: pure tensor math.

Paper: Diao, Wang, Zhang, Yang, Ding, Tarokh, "Pruning Deep Neural Networks from a Sparsity
Perspective", ICLR 2023 (arXiv 2302.05601).

For w in R^d and 0 < p < q the PQ Index is

    PQI_{p,q}(w) = 1 - d^(1/q - 1/p) * ||w||_p / ||w||_q,      0 <= PQI <= 1 - d^(1/q - 1/p),

larger meaning sparser (a one-hot vector reaches the upper bound, a constant vector gives 0). It
satisfies the six sparsity axioms of Hurley & Rickard (Robin Hood, Scaling, Rising Tide, Cloning,
Bill Gates, Babies). SAP keeps at least

    r = d * (1 + eta)^(-q/(q-p)) * (1 - PQI)^(q*p/(q-p))

weights and prunes `floor(d * clamp(gamma * (1 - r/d), 0, beta))` of the d surviving ones; with
p=0.5, q=1, eta=0, gamma=1 one round keeps exactly a fraction 1 - PQI.

Conventions (so no NaN ever reaches a pruning decision): d counts surviving (unmasked) entries,
zeros included; with d = 0 or an all-zero vector PQI is 0 ("no evidence of sparsity", so SAP
prunes nothing there). Computation runs in float64 after dividing by max|w| (PQI is scale
invariant), so large or tiny weights neither overflow nor underflow.
"""

from __future__ import annotations

import math

import torch


def check_pq(p: float, q: float) -> None:
    """Raise ValueError unless 0 < p < q (both finite)."""
    if not (math.isfinite(p) and math.isfinite(q) and 0 < p < q):
        raise ValueError(f"PQ Index needs 0 < p < q, got p={p}, q={q}; use e.g. p=0.5, q=1.0 (the paper's default)")


def pq_index(w: torch.Tensor, p: float = 0.5, q: float = 1.0, *, mask: torch.Tensor | None = None,
             dim: int | None = None) -> torch.Tensor:
    """PQ Index of `w` (float64 tensor; scalar when `dim` is None, else reduced over `dim`).

    mask: optional bool tensor shaped like `w`; only True entries count (d = mask.sum()).
    dim: reduce over this dimension only, e.g. `pq_index(w2d, dim=1)` gives one PQI per row
    (neuron) of a (out, in) weight.
    """
    check_pq(p, q)
    a = w.detach().abs().to(torch.float64)
    if mask is not None:
        if mask.shape != w.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} must equal weight shape {tuple(w.shape)}")
        m = mask.to(device=a.device, dtype=torch.bool)
        a = torch.where(m, a, torch.zeros((), dtype=a.dtype, device=a.device))
    if dim is None:
        a = a.reshape(-1)
        m = m.reshape(-1) if mask is not None else None
        dim = 0
    dim = dim % a.ndim
    d = m.sum(dim).to(torch.float64) if mask is not None else torch.full(
        a.shape[:dim] + a.shape[dim + 1:], float(a.shape[dim]), dtype=torch.float64, device=a.device)
    if a.shape[dim] == 0:
        return torch.zeros_like(d)
    scale = a.amax(dim, keepdim=True)  # PQI is scale invariant; normalising avoids over/underflow
    a = a / torch.where(scale > 0, scale, torch.ones_like(scale))
    norm_p = a.pow(p).sum(dim).pow(1.0 / p)
    norm_q = a.pow(q).sum(dim).pow(1.0 / q)
    ok = (d > 0) & (norm_q > 0)
    safe_d = torch.where(ok, d, torch.ones_like(d))
    ratio = norm_p / torch.where(ok, norm_q, torch.ones_like(norm_q))
    pqi = 1.0 - safe_d.pow(1.0 / q - 1.0 / p) * ratio
    upper = 1.0 - safe_d.pow(1.0 / q - 1.0 / p)
    pqi = torch.minimum(pqi.clamp_min(0.0), upper)  # rounding can step a hair outside the bounds
    return torch.where(ok, pqi, torch.zeros_like(pqi))


def pq_upper_bound(d: int | float | torch.Tensor, p: float = 0.5, q: float = 1.0) -> torch.Tensor:
    """The largest PQI a d-vector can reach (a one-hot vector): 1 - d^(1/q - 1/p); 0 for d <= 1."""
    check_pq(p, q)
    d = torch.as_tensor(d, dtype=torch.float64)
    return torch.where(d >= 1, 1.0 - d.clamp_min(1.0).pow(1.0 / q - 1.0 / p), torch.zeros_like(d))


def retain_bound(d: int | float | torch.Tensor, pqi: float | torch.Tensor, p: float = 0.5, q: float = 1.0,
                 eta: float = 0.0) -> torch.Tensor:
    """SAP lower bound on how many of d weights to keep: d (1+eta)^(-q/(q-p)) (1-PQI)^(qp/(q-p))."""
    check_pq(p, q)
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (the paper's eta_r), got {eta}; use 0 for the plain bound")
    d = torch.as_tensor(d, dtype=torch.float64)
    pqi = torch.as_tensor(pqi, dtype=torch.float64).clamp(0.0, 1.0)
    return d * (1.0 + eta) ** (-q / (q - p)) * (1.0 - pqi).pow(q * p / (q - p))


def prune_ratio(d: int | float | torch.Tensor, pqi: float | torch.Tensor, p: float = 0.5, q: float = 1.0,
                eta: float = 0.0, gamma: float = 1.0, beta: float = 0.9) -> torch.Tensor:
    """Fraction of the d surviving weights SAP prunes: clamp(gamma * (1 - r/d), 0, beta); 0 where d = 0."""
    d = torch.as_tensor(d, dtype=torch.float64)
    r = retain_bound(d, pqi, p, q, eta)
    ratio = (gamma * (1.0 - r / torch.where(d > 0, d, torch.ones_like(d)))).clamp(0.0, beta)
    return torch.where(d > 0, ratio, torch.zeros_like(ratio))


def num_to_prune(d: int | float | torch.Tensor, ratio: float | torch.Tensor) -> torch.Tensor:
    """floor(d * ratio) as int64, with a tiny epsilon so 0.7 * 10 prunes 7, not 6."""
    d = torch.as_tensor(d, dtype=torch.float64)
    n = torch.floor(d * torch.as_tensor(ratio, dtype=torch.float64) + 1e-9).to(torch.int64)
    return torch.minimum(n, d.to(torch.int64)).clamp_min(0)
