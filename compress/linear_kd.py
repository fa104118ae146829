"""The linear binary case study of distillation (Phuong & Lampert 2019, "Towards Understanding Knowledge
Distillation", following Hinton et al. 2015).

Data x ~ N(0, I_d); teacher h0(x) = 1(w0 . x >= 0) with soft labels sigmoid(w0 . x); student
h(x) = sigmoid(w . x) trained by full-batch gradient descent FROM ZERO on binary cross-entropy.

Theory, with X the (n, d) matrix whose ROWS are the samples (our convention throughout):
- soft labels, n >= d (X of full column rank): the loss is strictly convex and zero-gradient exactly at
  X w = X w0, so w -> w0 (direction and norm);
- soft labels, n < d: every gradient is X^T r, so w stays in the row span of X and converges to the
  point of that span with X w = X w0, i.e. the projection P w0 with P = X^T (X X^T)^-1 X
  (the issue's X (X^T X)^-1 X^T w0 is the same formula with samples as COLUMNS);
- hard labels: the data are separable, ||w|| grows without bound and the direction drifts to the
  max-margin separator (Soudry et al. 2018), not to w0.
For isotropic x the consistency loss P[h(x) != h0(x)] equals angle(w, w0) / pi, so it measures how far
the student's direction is from the teacher's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DTYPE = torch.float64  # the projection check compares to ~1e-6; float32 GD stalls near 1e-4


@dataclass
class LinearProblem:
    x: torch.Tensor  # (n, d) samples as rows
    w0: torch.Tensor  # (d,) teacher direction, unit norm


@dataclass
class LinearFit:
    w: torch.Tensor  # (d,)
    steps: int
    grad_norm: float


def make_problem(n: int, d: int, seed: int = 0) -> LinearProblem:
    if n < 1 or d < 1:
        raise ValueError(f"need n >= 1 samples and d >= 1 dimensions, got n={n}, d={d}")
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(d, generator=gen, dtype=DTYPE)
    return LinearProblem(torch.randn(n, d, generator=gen, dtype=DTYPE), w0 / w0.norm())


def targets(x: torch.Tensor, w0: torch.Tensor, *, soft: bool) -> torch.Tensor:
    """Soft labels sigmoid(x . w0) or hard labels 1(x . w0 >= 0), shape (n,)."""
    z = x @ w0  # (n,)
    return torch.sigmoid(z) if soft else (z >= 0).to(x.dtype)


def train_linear(x: torch.Tensor, y: torch.Tensor, *, max_steps: int = 20000, tol: float = 1e-10,
                 lr: float | None = None) -> LinearFit:
    """Full-batch GD from w = 0 on mean BCE(sigmoid(x w), y), until ||grad|| < tol or max_steps.

    The default step 1/L uses the loss's smoothness bound L = lambda_max(X^T X) / (4 n).
    """
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need x (n, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("targets must be probabilities in [0, 1]")
    n, d = x.shape
    if lr is None:
        lr = 1.0 / (torch.linalg.matrix_norm(x, ord=2).item() ** 2 / (4 * n))
    w = torch.zeros(d, dtype=x.dtype)
    grad_norm, step = math.inf, 0
    for step in range(1, max_steps + 1):  # noqa: B007 (step is reported)
        grad = x.T @ (torch.sigmoid(x @ w) - y) / n  # (d,)
        grad_norm = grad.norm().item()
        if grad_norm < tol:
            break
        w -= lr * grad
    return LinearFit(w, step, grad_norm)


def row_span_projection(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """P v with P = X^T (X X^T)^-1 X, the orthogonal projection onto the span of the rows of x (n, d)."""
    return x.T @ torch.linalg.solve(x @ x.T, x @ v)


def angle(u: torch.Tensor, v: torch.Tensor) -> float:
    """Angle between u and v in radians (0 when u is zero, by convention of a direction-free student)."""
    nu, nv = u.norm(), v.norm()
    if nu == 0 or nv == 0:
        return math.pi / 2
    return math.acos(max(-1.0, min(1.0, (u @ v / (nu * nv)).item())))


def consistency_loss(w: torch.Tensor, w0: torch.Tensor) -> float:
    """P_x[1(w.x >= 0) != 1(w0.x >= 0)] for isotropic Gaussian x: angle(w, w0) / pi."""
    return angle(w, w0) / math.pi


def empirical_consistency_loss(w: torch.Tensor, w0: torch.Tensor, n_test: int = 100_000, seed: int = 1) -> float:
    """Monte-Carlo estimate of the same disagreement on fresh Gaussian inputs."""
    x = torch.randn(n_test, len(w0), generator=torch.Generator().manual_seed(seed), dtype=w0.dtype)
    return ((x @ w >= 0) != (x @ w0 >= 0)).double().mean().item()
