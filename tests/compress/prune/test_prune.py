"""prune_ with SAP and magnitude configs: config validation, per-scope decisions, masks through training,
iterative schedules, and a tiny random transformers LlamaForCausalLM."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from compress.models import MLP
from compress.prune import (
    MagnitudePruneConfig,
    PQIPruneConfig,
    iterative_prune,
    keep_masked,
    mask_gradients_,
    one_shot_curve,
    pq_index,
    prunable_weights,
    prune_,
    sparsity,
)
from compress.train import fit


def mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(784, [32, 16], 10)


def toy_data(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = (x.flatten(1)[:, :10].argmax(1)).long()  # learnable labels
    return x, y


@pytest.mark.parametrize("kwargs,field", [
    ({"p": 1.0, "q": 1.0}, "p < q"), ({"p": 2.0, "q": 1.0}, "p < q"), ({"p": 0.0}, "p < q"),
    ({"beta": 0.0}, "beta"), ({"beta": 1.0}, "beta"), ({"beta": 1.5}, "beta"),
    ({"gamma": 0.0}, "gamma"), ({"eta": -0.1}, "eta"), ({"eta": math.nan}, "eta"),
    ({"scope": "channel"}, "scope"), ({"ignore": "lm_head"}, "ignore"),
])
def test_pqi_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PQIPruneConfig(**kwargs)


@pytest.mark.parametrize("kwargs,field", [({"amount": 1.0}, "amount"), ({"amount": -0.1}, "amount"),
                                          ({"scope": "row"}, "scope")])
def test_magnitude_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MagnitudePruneConfig(**kwargs)


def test_config_serialises_with_version_and_hash():
    cfg = PQIPruneConfig(scope="neuron", ignore=["lm_head"])
    d = cfg.to_dict()
    assert d["type"] == "PQIPruneConfig" and d["version"] == 1 and d["ignore"] == ("lm_head",)
    json.dumps(d)
    assert cfg.config_hash() != PQIPruneConfig().config_hash()


@pytest.mark.parametrize("model", [nn.Sequential(nn.ReLU()), nn.LayerNorm(8), nn.Embedding(10, 4)])
def test_model_with_nothing_prunable_raises(model):
    with pytest.raises(ValueError, match="no prunable weights"):
        prune_(model, PQIPruneConfig())


def test_wrong_config_type_raises():
    with pytest.raises(TypeError, match="PQIPruneConfig"):
        prune_(mlp(), {"p": 0.5})


def test_layer_scope_keeps_exactly_one_minus_pqi_per_layer():
    model = mlp()
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    biases = [m.bias.detach().clone() for m in model.layers if isinstance(m, nn.Linear)]
    report = prune_(model, PQIPruneConfig(scope="layer"))
    for s in report.layers:
        w = before[s.name]
        pqi = float(pq_index(w, 0.5, 1.0))
        assert s.pqi == pytest.approx(pqi)
        assert s.kept_after == w.numel() - math.floor(w.numel() * pqi + 1e-9)
        kept = report.masks[s.name]
        assert int(kept.sum()) == s.kept_after
        assert w[kept].abs().min() >= w[~kept].abs().max()  # smallest magnitudes went
        assert (model.get_parameter(s.name)[~kept] == 0).all()
    for b, m in zip(biases, [m for m in model.layers if isinstance(m, nn.Linear)], strict=True):
        assert torch.equal(b, m.bias)  # biases are never pruned
    assert report.retained_fraction == pytest.approx(
        sum(s.kept_after for s in report.layers) / sum(s.numel for s in report.layers))


def test_global_scope_uses_one_threshold_and_one_pqi():
    model = mlp()
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    report = prune_(model, PQIPruneConfig(scope="global", gamma=2.0))
    flat = torch.cat([w.reshape(-1) for w in before.values()])
    assert report.pqi_global == pytest.approx(float(pq_index(flat)))
    n_pruned = math.floor(flat.numel() * min(2.0 * report.pqi_global, 0.9) + 1e-9)
    assert sum(s.kept_after for s in report.layers) == flat.numel() - n_pruned
    kept_min = min(before[n][m].abs().min() for n, m in report.masks.items())
    pruned_max = max(before[n][~m].abs().max() for n, m in report.masks.items())
    assert kept_min >= pruned_max


def test_neuron_scope_decides_per_row():
    model = mlp()
    w = model.layers[0].weight.detach().clone()
    with torch.no_grad():  # make row 0 very sparse (one big weight): SAP must prune most of it
        model.layers[0].weight[0] = 1e-4
        model.layers[0].weight[0, 0] = 5.0
    w = model.layers[0].weight.detach().clone()
    report = prune_(model, PQIPruneConfig(scope="neuron"))
    kept = report.masks["layers.0.weight"]
    row_pqi = pq_index(w, dim=1)
    expected = w.shape[1] - torch.floor(w.shape[1] * row_pqi.clamp(max=0.9) + 1e-9)
    assert kept.sum(1).tolist() == expected.tolist()
    assert kept[0].sum() == w.shape[1] - math.floor(w.shape[1] * 0.9)  # capped by beta
    assert kept[0, 0]
    assert report.layers[0].pqi_neuron_mean == pytest.approx(float(row_pqi.mean()))


@pytest.mark.parametrize("scope", ["global", "layer", "neuron"])
def test_magnitude_prunes_amount_of_survivors(scope):
    model = mlp()
    r1 = prune_(model, MagnitudePruneConfig(amount=0.2, scope=scope))
    r2 = prune_(model, MagnitudePruneConfig(amount=0.2, scope=scope))  # masks inferred from zeros
    total = sum(s.numel for s in r1.layers)
    assert r1.retained_fraction == pytest.approx(0.8, abs=0.01)
    assert r2.retained_fraction == pytest.approx(0.64, abs=0.01)
    assert sum(s.kept_before for s in r2.layers) == sum(s.kept_after for s in r1.layers)
    for n, m in r2.masks.items():
        assert not (m & ~r1.masks[n]).any()  # pruned weights never come back
    assert r2.retained_fraction * total > 0


def test_report_metrics_are_flat_floats_and_json():
    report = prune_(mlp(), PQIPruneConfig())
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in report.metrics.items())
    assert report.metrics["retained_fraction"] == report.retained_fraction
    assert "pqi.layers.0.weight" in report.metrics
    json.dumps(report.to_dict())


def test_masks_stay_applied_after_optimiser_steps():
    x, y = toy_data()
    model = mlp()
    report = prune_(model, MagnitudePruneConfig(amount=0.5, scope="layer"))
    fit(model, x, y, epochs=2, lr=1e-2, weight_decay=1e-3, batch_size=32, after_step=keep_masked(report.masks))
    for name, mask in report.masks.items():
        w = model.get_parameter(name)
        assert (w[~mask] == 0).all() and (w[mask] != 0).all()
        assert not torch.signbit(w[~mask]).any()  # +0.0 (all-zero bits), so sparse export can drop them
    assert sparsity(model) == pytest.approx(0.5, abs=0.01)
    # control: without the hook Adam would revive pruned weights (so the check above can fail)
    control = mlp()
    rep = prune_(control, MagnitudePruneConfig(amount=0.5, scope="layer"))
    fit(control, x, y, epochs=1, lr=1e-2, batch_size=32)
    assert any((control.get_parameter(n)[~m] != 0).any() for n, m in rep.masks.items())


def test_gradient_hooks_zero_pruned_gradients():
    x, y = toy_data(32)
    model = mlp()
    report = prune_(model, MagnitudePruneConfig(amount=0.7, scope="global"))
    handles = mask_gradients_(model, report.masks)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for name, mask in report.masks.items():
        grad = model.get_parameter(name).grad
        assert (grad[~mask] == 0).all() and (grad[mask] != 0).any()
    for h in handles:
        h.remove()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert any((model.get_parameter(n).grad[~m] != 0).any() for n, m in report.masks.items())


@pytest.mark.parametrize("rewind", [True, False])
def test_iterative_prune_rounds(rewind):
    x, y = toy_data()
    model = mlp()
    init = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    evals = []
    reports = iterative_prune(model, x, y, config=MagnitudePruneConfig(0.2, "global"), rounds=3, epochs=1,
                              rewind=rewind, eval_fn=lambda m: evals.append(1) or 0.5,
                              fit_kwargs={"batch_size": 64})
    assert [r.round for r in reports] == [0, 1, 2, 3] and len(evals) == 4
    assert reports[0].prune is None and reports[0].retained_fraction == 1.0
    assert [round(r.retained_fraction, 2) for r in reports] == [1.0, 0.8, 0.64, 0.51]
    assert all(r.accuracy == 0.5 for r in reports)
    masks = reports[-1].prune.masks
    for name, mask in masks.items():
        assert (model.get_parameter(name)[~mask] == 0).all()
    # with epochs=0 rewinding restores the initial values of the survivors
    model2 = mlp()
    reps = iterative_prune(model2, x, y, config=PQIPruneConfig(), rounds=1, epochs=0, rewind=rewind)
    w, m = model2.get_parameter("layers.0.weight"), reps[-1].prune.masks["layers.0.weight"]
    assert torch.equal(w[m], init["layers.0.weight"][m])


def test_schedule_rejects_bad_arguments():
    x, y = toy_data(32)
    with pytest.raises(ValueError, match="rounds"):
        iterative_prune(mlp(), x, y, config=PQIPruneConfig(), rounds=-1, epochs=1, rewind=False)
    with pytest.raises(ValueError, match="fit_kwargs"):
        iterative_prune(mlp(), x, y, config=PQIPruneConfig(), rounds=1, epochs=1, rewind=False,
                        fit_kwargs={"after_step": None})
    with pytest.raises(ValueError, match="retained"):
        one_shot_curve(mlp(), x, y, retained=[0.5, 0.0], epochs=0)


def test_one_shot_curve_hits_each_target_from_the_dense_model():
    x, y = toy_data(64)
    reports = one_shot_curve(mlp(), x, y, retained=[0.5, 0.2], epochs=1, fit_kwargs={"batch_size": 32})
    assert [round(r.retained_fraction, 2) for r in reports] == [1.0, 0.5, 0.2]
    m1, m2 = reports[1].prune.masks, reports[2].prune.masks
    assert all(not (m2[n] & ~m1[n]).any() for n in m1)  # same dense ranking: nested masks


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def test_prunes_linear_layers_of_a_causal_lm():
    model = tiny_llama()
    embed = model.model.embed_tokens.weight.detach().clone()
    head = model.lm_head.weight.detach().clone()
    report = prune_(model, PQIPruneConfig(scope="neuron", gamma=2.0, ignore=("lm_head",)))
    names = {s.name for s in report.layers}
    assert "model.layers.0.mlp.down_proj.weight" in names and "model.layers.1.self_attn.q_proj.weight" in names
    assert "lm_head.weight" not in names and not any("embed" in n or "norm" in n for n in names)
    assert 0.3 < report.retained_fraction < 1.0
    assert torch.equal(model.model.embed_tokens.weight, embed) and torch.equal(model.lm_head.weight, head)
    with torch.no_grad():
        logits = model(torch.randint(0, 64, (2, 8))).logits
    assert logits.shape == (2, 8, 64) and torch.isfinite(logits).all()
