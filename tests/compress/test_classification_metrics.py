"""compress.evaluate.classification against values computed by hand."""

import math

import pytest
import torch
from torch import nn

from compress.evaluate.classification import (
    accuracy,
    agreement,
    classification_metrics,
    kl_to_teacher,
    predict_logits,
)

# argmax per row: 0, 1, 2, 1
STUDENT = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 2.0, 0.0]])
# argmax per row: 0, 1, 0, 2
TEACHER = torch.tensor([[4.0, 0.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
LABELS = torch.tensor([0, 1, 1, 1])


def test_accuracy_counts_argmax_hits():
    assert accuracy(STUDENT, LABELS) == pytest.approx(3 / 4)  # rows 0, 1, 3 right
    assert accuracy(TEACHER, LABELS) == pytest.approx(2 / 4)


def test_agreement_is_one_minus_consistency_loss():
    assert agreement(STUDENT, TEACHER) == pytest.approx(2 / 4)  # rows 0 and 1 agree
    assert agreement(TEACHER, TEACHER) == 1.0


def test_kl_matches_hand_computation():
    # Two classes, one row: teacher p = (0.5, 0.5), student q = softmax(ln 3, 0) = (0.75, 0.25).
    s = torch.tensor([[math.log(3.0), 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_to_teacher(s, t) == pytest.approx(expected, abs=1e-6)
    assert kl_to_teacher(t, t) == pytest.approx(0.0, abs=1e-7)


def test_kl_averages_over_rows_and_uses_temperature():
    # At T = 2 the student logits (2 ln 3, 0) become (ln 3, 0): same KL as above; second row identical -> 0.
    s = torch.tensor([[2 * math.log(3.0), 0.0], [1.0, 2.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    single = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_to_teacher(s, t, temperature=2.0) == pytest.approx(single / 2, abs=1e-6)


def test_classification_metrics_bundle():
    m = classification_metrics(STUDENT, LABELS, TEACHER)
    assert set(m) == {"accuracy", "agreement", "kl_to_teacher"}
    assert m["accuracy"] == pytest.approx(0.75) and m["agreement"] == pytest.approx(0.5)
    assert m["kl_to_teacher"] > 0
    assert set(classification_metrics(STUDENT, LABELS)) == {"accuracy"}


@pytest.mark.parametrize("call", [
    lambda: accuracy(STUDENT, LABELS[:3]),
    lambda: accuracy(STUDENT[0], LABELS[:1]),
    lambda: agreement(STUDENT, TEACHER[:, :2]),
    lambda: kl_to_teacher(STUDENT, TEACHER[:2]),
])
def test_shape_mismatches_raise(call):
    with pytest.raises(ValueError, match="shape"):
        call()


def test_predict_logits_batches_and_restores_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    x = torch.randn(10, 4)
    out = predict_logits(model, x, batch_size=3)
    assert out.shape == (10, 3) and model.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))
