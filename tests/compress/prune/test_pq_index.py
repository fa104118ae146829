"""PQ Index: the six sparsity axioms (Hurley & Rickard, proved for PQI by Diao et al. 2023), known values,
edge cases, bounds and the SAP retain bound / prune ratio formulas."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compress.prune import pq_index, pq_upper_bound, prune_ratio, retain_bound
from compress.prune.pq_index import num_to_prune

TOL = 1e-9
vectors = st.lists(st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False), min_size=2, max_size=24)
pq_pairs = st.tuples(st.floats(0.1, 3.0), st.floats(0.1, 3.0)).map(lambda t: (t[0], t[0] + t[1]))
# Robin Hood and Rising Tide need ||w||_p / ||w||_q to be Schur-concave, i.e. p <= 1 <= q (the paper's
# theorem assumes 0 < p <= 1 < q); for 1 < p < q they fail (see test_robin_hood_fails_for_p_above_one).
pq_schur = st.tuples(st.floats(0.1, 1.0), st.floats(1.01, 4.0))
fast = settings(max_examples=50, deadline=None)


def S(c, p, q) -> float:  # noqa: N802 (the paper's notation)
    return float(pq_index(torch.tensor(c, dtype=torch.float64), p, q))


@fast
@given(vectors, pq_schur, st.data())
def test_robin_hood_taking_from_the_rich_lowers_sparsity(c, pq, data):
    p, q = pq
    i = data.draw(st.integers(0, len(c) - 1))
    j = data.draw(st.integers(0, len(c) - 1))
    assume(c[i] - c[j] > 1e-3)
    alpha = data.draw(st.floats(0.05, 0.95)) * (c[i] - c[j]) / 2
    moved = list(c)
    moved[i] -= alpha
    moved[j] += alpha
    assert S(moved, p, q) <= S(c, p, q) + TOL


def test_robin_hood_fails_for_p_above_one():
    # a counterexample found by hypothesis: why the axiom tests above draw p <= 1 < q
    assert S([0.75, 0.25, 1.0], 3.0, 4.0) > S([1.0, 0.0, 1.0], 3.0, 4.0)


@fast
@given(vectors, pq_pairs, st.floats(1e-3, 1e3))
def test_scaling_does_not_change_sparsity(c, pq, alpha):
    assert S([alpha * v for v in c], *pq) == pytest.approx(S(c, *pq), abs=1e-9)


@fast
@given(vectors, pq_schur, st.floats(1e-3, 50.0))
def test_rising_tide_adding_a_constant_lowers_sparsity(c, pq, alpha):
    assume(max(c) - min(c) > 1e-3)
    assert S([v + alpha for v in c], *pq) < S(c, *pq) + TOL


@fast
@given(vectors, pq_pairs, st.integers(2, 4))
def test_cloning_keeps_sparsity(c, pq, k):
    assert S(c * k, *pq) == pytest.approx(S(c, *pq), abs=1e-9)


@fast
@given(vectors, pq_pairs, st.data())
def test_bill_gates_one_growing_entry_raises_sparsity(c, pq, data):
    i = data.draw(st.integers(0, len(c) - 1))
    beta = 1e3 * (sum(c) + 1.0) * len(c)
    alpha = data.draw(st.floats(1.0, 1e6)) * (sum(c) + 1.0)
    rich, richer = list(c), list(c)
    rich[i] += beta
    richer[i] += beta + alpha
    assert S(richer, *pq) > S(rich, *pq) - TOL


@fast
@given(vectors, pq_pairs)
def test_babies_appending_zeros_raises_sparsity(c, pq):
    assume(max(c) > 1e-6)
    assert S([*c, 0.0], *pq) > S(c, *pq)


@fast
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40), pq_pairs)
def test_bounds_hold_for_any_vector(c, pq):
    s = S(c, *pq)
    assert -TOL <= s <= float(pq_upper_bound(len(c), *pq)) + TOL


def test_known_values():
    assert S([1.0, 0, 0, 0], 0.5, 1.0) == pytest.approx(0.75)
    assert S([0, 0, 3.0, 0], 0.5, 1.0) == pytest.approx(float(pq_upper_bound(4)))
    assert S([2.5] * 7, 0.5, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert S([-2.5, 2.5, -2.5], 1.0, 2.0) == pytest.approx(0.0, abs=1e-12)  # PQI uses |w|


def test_large_gaussian_limits():
    g = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(pq_index(g, 0.5, 1.0)) == pytest.approx(0.1528, abs=2e-3)
    assert float(pq_index(g, 1.0, 2.0)) == pytest.approx(1 - math.sqrt(2 / math.pi), abs=2e-3)


def test_empty_and_all_zero_are_zero_not_nan():
    for w in (torch.zeros(0), torch.zeros(5), torch.zeros(3, 4)):
        v = pq_index(w)
        assert not torch.isnan(v) and float(v) == 0.0
    w = torch.randn(4, 6)
    assert float(pq_index(w, mask=torch.zeros(4, 6, dtype=torch.bool))) == 0.0
    rows = pq_index(torch.zeros(3, 5), dim=1)
    assert rows.shape == (3,) and not torch.isnan(rows).any() and (rows == 0).all()


def test_mask_and_dim_match_explicit_selection():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 9, generator=g)
    mask = torch.rand(6, 9, generator=g) > 0.4
    assert float(pq_index(w, mask=mask)) == pytest.approx(float(pq_index(w[mask])))
    rows = pq_index(w, 0.5, 1.0, mask=mask, dim=1)
    expected = [float(pq_index(w[i][mask[i]])) for i in range(6)]
    assert rows.tolist() == pytest.approx(expected)
    assert pq_index(w, dim=-1).tolist() == pytest.approx(pq_index(w, dim=1).tolist())


def test_tiny_and_huge_magnitudes_do_not_underflow():
    w = torch.tensor([1e-30, 2e-30, 0.0, 4e-30], dtype=torch.float32)
    assert S(w.tolist(), 0.5, 1.0) == pytest.approx(S([1, 2, 0, 4], 0.5, 1.0), abs=1e-6)
    assert float(pq_index(torch.tensor([3e38, 1e38]), 1.0, 4.0)) == pytest.approx(S([3, 1], 1.0, 4.0), abs=1e-6)


@pytest.mark.parametrize("p,q", [(1.0, 0.5), (1.0, 1.0), (0.0, 1.0), (-1.0, 2.0), (0.5, math.inf)])
def test_bad_p_q_raise(p, q):
    with pytest.raises(ValueError, match="0 < p < q"):
        pq_index(torch.ones(3), p, q)


def test_retain_bound_formula():
    d, pqi, p, q, eta = 1000.0, 0.3, 0.7, 2.0, 0.05
    expected = d * (1 + eta) ** (-q / (q - p)) * (1 - pqi) ** (q * p / (q - p))
    assert float(retain_bound(d, pqi, p, q, eta)) == pytest.approx(expected)
    # defaults (0.5, 1, eta=0): keep exactly 1 - PQI
    assert float(retain_bound(200, 0.31)) == pytest.approx(200 * 0.69)
    assert float(prune_ratio(200, 0.31)) == pytest.approx(0.31)
    assert float(prune_ratio(200, 0.31, gamma=2.0)) == pytest.approx(0.62)
    assert float(prune_ratio(200, 0.8, gamma=2.0, beta=0.9)) == pytest.approx(0.9)  # capped by beta
    assert float(prune_ratio(0, 0.5)) == 0.0
    assert float(prune_ratio(100, 0.0)) == 0.0
    assert int(num_to_prune(10, 0.7)) == 7 and int(num_to_prune(10, 0.79)) == 7
    with pytest.raises(ValueError, match="eta"):
        retain_bound(10, 0.1, eta=-0.5)


def test_retain_bound_vectorised_over_rows():
    d = torch.tensor([10.0, 20.0, 0.0])
    pqi = torch.tensor([0.1, 0.5, 0.0])
    assert prune_ratio(d, pqi).tolist() == pytest.approx([0.1, 0.5, 0.0])
