"""structured-llm: physical removal of MLP channels, GQA-aware heads and layers from tiny random Llamas."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from compress.prune.structured_llm import (
    StructuredLLMPruneConfig,
    _select_heads,
    non_embedding_params,
    structured_llm_prune_,
)
from compress.techniques import pruner

HIDDEN, HEADS, KV, HEAD_DIM, WIDTH, LAYERS = 32, 4, 2, 8, 64, 3


def tiny(seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=128, hidden_size=HIDDEN, intermediate_size=WIDTH, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=64,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def calib(n: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 128, (2, 12), generator=g) for _ in range(n)]


IDS = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(2))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_registered_as_structured_pruner():
    technique = pruner("structured-llm")
    assert technique.structured and technique.config is StructuredLLMPruneConfig
    assert technique.apply is structured_llm_prune_


@pytest.mark.parametrize("importance", ["activation", "magnitude"])
def test_nothing_removed_keeps_outputs(importance):
    model = tiny()
    before = logits(model)
    report = structured_llm_prune_(model, StructuredLLMPruneConfig(target=0.0, importance=importance), calib())
    assert report.params_after == report.params_before and report.intermediate_sizes == [WIDTH] * LAYERS
    torch.testing.assert_close(logits(model), before, rtol=0, atol=0)


@pytest.mark.parametrize("ratio", ["uniform", "pqi"])
def test_shapes_and_config_shrink_consistently(ratio):
    model = tiny()
    config = StructuredLLMPruneConfig(target=0.4, ratio=ratio, num_attention_heads=2, num_key_value_heads=2)
    report = structured_llm_prune_(model, config, calib())
    c = model.config
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (2, 2, HEAD_DIM)
    assert c.intermediate_size == max(report.intermediate_sizes) < WIDTH
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        assert attn.q_proj.weight.shape == (2 * HEAD_DIM, HIDDEN) and attn.o_proj.weight.shape == (HIDDEN, 2 * HEAD_DIM)
        assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (2 * HEAD_DIM, HIDDEN)
        assert attn.num_key_value_groups == 1
        assert mlp.gate_proj.out_features == mlp.up_proj.out_features == mlp.down_proj.in_features == c.intermediate_size
    assert report.params_after == non_embedding_params(model)
    assert abs(1 - report.effective_params / report.params_before - 0.4) < 0.03
    if ratio == "uniform":
        assert report.effective_params == report.params_after
    out = model.generate(input_ids=IDS[:1, :4], max_new_tokens=3, do_sample=False)  # KV cache still consistent
    assert out.shape == (1, 7)


def _zero_channel_model():
    model = tiny()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.down_proj.weight[:, 5] = 0            # channel 5 contributes nothing
            layer.self_attn.o_proj.weight[:, 0:HEAD_DIM] = 0  # query head 0 (group 0) contributes nothing
            layer.self_attn.o_proj.weight[:, 3 * HEAD_DIM:] = 0  # query head 3 (group 1) contributes nothing
    return model


@pytest.mark.parametrize("importance", ["activation", "magnitude"])
def test_removing_zero_importance_units_keeps_outputs(importance):
    model = _zero_channel_model()
    before, n = logits(model), non_embedding_params(model)
    attn = LAYERS * 2 * HIDDEN * HEAD_DIM * 2        # q and o lose two heads per layer
    target = (attn + LAYERS * 3 * HIDDEN) / n          # ... and every layer one MLP channel
    report = structured_llm_prune_(model, StructuredLLMPruneConfig(target=target, importance=importance,
                                                                   num_attention_heads=2), calib())
    assert report.intermediate_sizes == [WIDTH - 1] * LAYERS and model.config.num_attention_heads == 2
    torch.testing.assert_close(logits(model), before, rtol=1e-5, atol=1e-5)


def test_removing_a_dead_kv_group_keeps_outputs():
    model = tiny()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[:, 2 * HEAD_DIM:] = 0  # group 1 = query heads 2, 3
    before, n = logits(model), non_embedding_params(model)
    target = LAYERS * 6 * HIDDEN * HEAD_DIM / n       # q, o lose 2 heads; k, v lose 1
    structured_llm_prune_(model, StructuredLLMPruneConfig(target=target, num_key_value_heads=1), calib())
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 1)
    torch.testing.assert_close(logits(model), before, rtol=1e-5, atol=1e-5)


def test_select_heads_respects_groups():
    scores = torch.tensor([0.1, 5.0, 3.0, 4.0])
    assert _select_heads(scores, 4, 2, 2, 2) == ([1, 3], [0, 1])   # best head of each group
    assert _select_heads(scores, 4, 2, 2, 1) == ([2, 3], [1])      # the group with the larger sum


def test_drop_layers_renumbers_cache_slots():
    model = tiny()
    report = structured_llm_prune_(model, StructuredLLMPruneConfig(target=0.4, drop_layers=1), calib())
    assert model.config.num_hidden_layers == len(model.model.layers) == 2 and len(report.kept_layers) == 2
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    assert model.generate(input_ids=IDS[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


_LOAD = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("compress", "flows", "registry", "api"):
                raise ImportError("shrinkwrap must not be needed to load " + name)
    sys.meta_path.insert(0, Block())
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
    ids, expected = torch.load(sys.argv[2])
    with torch.no_grad():
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    print("ok", model.config.intermediate_size, model.config.num_attention_heads)
""")


@pytest.mark.parametrize("ratio", ["uniform", "pqi"])
def test_export_loads_without_shrinkwrap(tmp_path, ratio):
    model = tiny()
    structured_llm_prune_(model, StructuredLLMPruneConfig(target=0.3, ratio=ratio, num_attention_heads=2), calib())
    model.save_pretrained(tmp_path / "model")
    torch.save((IDS, logits(model)), tmp_path / "expected.pt")
    assert (tmp_path / "model" / "model.safetensors").stat().st_size < 4 * sum(p.numel() for p in tiny().parameters())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "model"), str(tmp_path / "expected.pt")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:3] == ["ok", str(model.config.intermediate_size), "2"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="every MLP channel"):
        structured_llm_prune_(tiny(), StructuredLLMPruneConfig(target=0.95, importance="magnitude"))
    with pytest.raises(ValueError, match="every MLP channel"):
        structured_llm_prune_(tiny(), StructuredLLMPruneConfig(target=0.95, ratio="pqi", importance="magnitude"))
    with pytest.raises(ValueError, match="breaks GQA grouping"):
        structured_llm_prune_(tiny(), StructuredLLMPruneConfig(num_attention_heads=3), calib())
    with pytest.raises(ValueError, match="breaks GQA grouping"):
        structured_llm_prune_(tiny(), StructuredLLMPruneConfig(num_attention_heads=4, num_key_value_heads=1), calib())
    with pytest.raises(ValueError, match="needs calibration"):
        structured_llm_prune_(tiny(), StructuredLLMPruneConfig(), None)
    with pytest.raises(ValueError, match="already remove"):
        structured_llm_prune_(tiny(), StructuredLLMPruneConfig(target=0.05, num_key_value_heads=1), calib())
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64))
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        structured_llm_prune_(gpt2, StructuredLLMPruneConfig(importance="magnitude"))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        StructuredLLMPruneConfig(target=1.0)
    with pytest.raises(ValueError, match="needs importance='activation'"):
        StructuredLLMPruneConfig(drop_layers=1, importance="magnitude")
