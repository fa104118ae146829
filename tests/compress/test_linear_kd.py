"""The linear distillation theory holds numerically (convention: samples are the ROWS of X (n, d), and
the projection onto their span is P = X^T (X X^T)^-1 X)."""

import math

import pytest
import torch

from compress.linear_kd import (
    angle,
    consistency_loss,
    empirical_consistency_loss,
    make_problem,
    row_span_projection,
    targets,
    train_linear,
)

D = 20


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("n", [3 * D, 10 * D])
def test_soft_labels_n_ge_d_recover_teacher(n):
    prob = make_problem(n, D, seed=n)
    fit = train_linear(prob.x, targets(prob.x, prob.w0, soft=True))
    assert fit.grad_norm < 1e-9
    assert _rel(fit.w, prob.w0) < 1e-6  # the whole vector, not just its direction
    assert consistency_loss(fit.w, prob.w0) < 1e-6


@pytest.mark.parametrize("n", [3, D // 2])
def test_soft_labels_n_lt_d_converge_to_projection(n):
    prob = make_problem(n, D, seed=n)
    fit = train_linear(prob.x, targets(prob.x, prob.w0, soft=True))
    proj = row_span_projection(prob.x, prob.w0)
    assert _rel(fit.w, proj) < 1e-6
    assert _rel(fit.w, prob.w0) > 0.1  # and this is NOT the teacher: the data cannot pin it down
    assert consistency_loss(fit.w, prob.w0) == pytest.approx(angle(proj, prob.w0) / math.pi, abs=1e-6)


def test_projection_is_orthogonal_projector():
    prob = make_problem(5, D, seed=0)
    v = torch.randn(D, dtype=prob.x.dtype)
    pv = row_span_projection(prob.x, v)
    torch.testing.assert_close(row_span_projection(prob.x, pv), pv)  # idempotent
    torch.testing.assert_close(prob.x @ pv, prob.x @ v)  # unchanged on the data
    assert abs(((v - pv) @ pv).item()) < 1e-9  # residual orthogonal to the span


def test_hard_labels_are_worse_than_soft_at_every_n():
    for n in (10, 40, 200):
        prob = make_problem(n, D, seed=7)
        soft = train_linear(prob.x, targets(prob.x, prob.w0, soft=True), max_steps=3000)
        hard = train_linear(prob.x, targets(prob.x, prob.w0, soft=False), max_steps=3000)
        assert consistency_loss(soft.w, prob.w0) < consistency_loss(hard.w, prob.w0), n
        assert hard.w.norm() > 3 * soft.w.norm()  # separable data: hard-label weights keep growing


def test_consistency_loss_is_angle_over_pi():
    w0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    w = torch.tensor([1.0, 1.0], dtype=torch.float64)  # 45 degrees
    assert consistency_loss(w, w0) == pytest.approx(0.25)
    assert empirical_consistency_loss(w, w0, n_test=200_000) == pytest.approx(0.25, abs=0.005)


def test_bad_inputs():
    with pytest.raises(ValueError, match="n >= 1"):
        make_problem(0, 5)
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="probabilities"):
        train_linear(x, torch.tensor([0.0, 2.0, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"need x \(n, d\) and y \(n,\)"):
        train_linear(x, torch.zeros(3, dtype=torch.float64))
