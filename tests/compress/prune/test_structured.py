"""prune_structured_: physically smaller models, exact when only dead neurons go, rebuildable from spec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.models import MLP, MnistCNN, build_model, count_parameters
from compress.prune import PQIPruneConfig, prune_structured_


def test_removing_dead_neurons_keeps_outputs_equal():
    torch.manual_seed(0)
    model = MLP(784, [32, 24], 10)
    with torch.no_grad():
        model.layers[0].weight[:6] = 0  # 6 zero rows: constant relu(bias) units (folded into next bias)
        model.layers[0].bias[:3] = -1.0  # ... three of them output exactly 0
        model.layers[2].weight[:, 10:14] = 0  # units 10..13 of hidden 1 feed nothing
        model.layers[2].weight[20:] = 0  # units 20..23 of hidden 2 are constant
    x = torch.rand(16, 1, 28, 28)
    expected = model(x)
    small = prune_structured_(model, amount=0.0)
    assert small.spec["hidden"] == [32 - 10, 24 - 4]
    assert count_parameters(small) < count_parameters(MLP(784, [32, 24], 10))
    torch.testing.assert_close(small(x), expected, rtol=1e-5, atol=1e-5)
    rebuilt = build_model(small.spec)
    rebuilt.load_state_dict(small.state_dict())  # exports as plain safetensors + spec
    torch.testing.assert_close(rebuilt(x), expected, rtol=1e-5, atol=1e-5)


def test_amount_removes_a_fraction_of_each_layer_by_row_norm():
    torch.manual_seed(0)
    model = MLP(784, [40, 20], 10)
    with torch.no_grad():
        model.layers[0].weight[:8] *= 1e-3  # the weakest rows must be the ones removed
    keep_ref = model.layers[0].weight[8:].detach().clone()
    small = prune_structured_(model, amount=0.5)
    assert small.spec["hidden"] == [20, 10]
    kept = small.layers[0].weight.detach()
    assert all(any(torch.equal(row, r) for r in keep_ref) for row in kept)


def test_sap_config_removes_weak_neurons_only():
    torch.manual_seed(0)
    model = MLP(784, [64, 32], 10)
    with torch.no_grad():
        model.layers[0].weight[:48] *= 1e-4  # 48 of 64 neurons are nearly silent: a sparse norm vector
    small = prune_structured_(model, config=PQIPruneConfig())
    assert small.spec["hidden"][0] < 64 and small.spec["hidden"][0] >= 16
    assert small.spec["hidden"][1] <= 32


def test_mnist_cnn_channels_and_hidden_shrink():
    torch.manual_seed(0)
    model = MnistCNN(channels=(8, 12), hidden=20)
    with torch.no_grad():
        model.features[3].weight[:2] = 0  # two conv-2 channels constant ...
        model.features[3].bias[:2] = -1.0  # ... and zero after ReLU: removable exactly
    x = torch.rand(4, 1, 28, 28)
    expected = model(x)
    exact = prune_structured_(model, amount=0.0)
    assert exact.spec["channels"] == [8, 10] and exact.spec["hidden"] == 20
    torch.testing.assert_close(exact(x), expected, rtol=1e-5, atol=1e-5)
    small = prune_structured_(exact, amount=0.5)
    assert small.spec["channels"] == [4, 5] and small.spec["hidden"] == 10
    assert small(x).shape == (4, 10)


def test_plain_sequential_is_pruned_in_place():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))
    out = prune_structured_(model, amount=0.25)
    assert out is model and model[0].out_features == 6 and model[2].in_features == 6


def test_llama_mlp_intermediate_size_shrinks_and_round_trips(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[:12] = 0  # 12 dead units in layer 0: SiLU(g) * 0 = 0
        model.model.layers[1].mlp.down_proj.weight[:, 30:] = 0  # 18 unused units in layer 1
        expected = model(ids).logits
    out = prune_structured_(model, amount=0.0)
    assert out is model and model.config.intermediate_size == 36  # widest layer decides
    assert model.model.layers[0].mlp.gate_proj.out_features == 36
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path)
    again = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="exactly one"):
        prune_structured_(MLP(784, [8], 10))
    with pytest.raises(ValueError, match="exactly one"):
        prune_structured_(MLP(784, [8], 10), amount=0.1, config=PQIPruneConfig())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_structured_(MLP(784, [8], 10), amount=1.0)
    with pytest.raises(ValueError, match="no structurally prunable"):
        prune_structured_(nn.Linear(4, 2), amount=0.5)
