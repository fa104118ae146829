import pytest
from torch import nn

from compress.models import MLP, eval_mode


def test_eval_mode_restores_each_models_own_state_even_on_error():
    training, evaluating = MLP(hidden=(4,)).train(), nn.Linear(2, 2).eval()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(training, evaluating):
        assert not training.training and not evaluating.training
        raise RuntimeError("boom")
    assert training.training and all(m.training for m in training.modules())
    assert not evaluating.training
