"""int8-dynamic: registered bundle, numeric closeness to fp32, size accounting, export/load round trips
(plain zoo models and HF Llama / BERT), and tied heads left in float."""

import json

import pytest
import torch
from torch import nn

from compress.export import export_model, load_export
from compress.models import MLP, MnistCNN
from compress.quantize import quantize_
from compress.quantize.dynamic_int8 import DynamicInt8Config, DynamicInt8Linear, quantize_rows
from compress.techniques import QUANT_MODULES, quantized_layers, quantizer


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=3)
    return BertForSequenceClassification(config).eval()


def test_registered_through_the_technique_table():
    assert "compress.quantize.dynamic_int8" in QUANT_MODULES
    technique = quantizer("int8-dynamic")
    assert technique.config is DynamicInt8Config and technique.make_config({"skip_modules": ["x"]}).skip_modules == ("x",)
    with pytest.raises(ValueError, match="skip_modules must be a list"):
        DynamicInt8Config(skip_modules="lm_head")


def test_quantize_rows_is_symmetric_per_row():
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and q[0, 1] == -127 and torch.equal(q[1], torch.zeros(3, dtype=torch.int8))
    assert torch.allclose(q.float() * scale[:, None], w, atol=2.0 / 254)


@pytest.mark.parametrize("make", [lambda: MLP(hidden=(64,)), lambda: MnistCNN(channels=(4, 8), hidden=16)],
                         ids=["mlp", "cnn"])
def test_zoo_model_close_to_fp32_and_export_round_trips(make, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        quantize_(model, DynamicInt8Config())
        out = model(x)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert set(quantized_layers(model)) and all(i["kind"] == "int8-dynamic" for i in quantized_layers(model).values())
    export_model(model, tmp_path / "e")
    loaded = load_export(tmp_path / "e")
    assert any(isinstance(m, DynamicInt8Linear) for m in loaded.modules())
    with torch.no_grad():
        assert torch.equal(loaded(x), out)  # the same int8 codes and the same kernel: bit-identical
        floats = load_export(tmp_path / "e", use_bitsandbytes=False)  # dequantized into nn.Linear
        assert not any(isinstance(m, DynamicInt8Linear) for m in floats.modules())
        assert (floats(x) - out).abs().max() < 0.05 * ref.abs().max()


def test_size_counts_int8_weights_and_scales():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    fp32 = quantizer("none").size(model)
    quantize_(model, DynamicInt8Config())
    report = quantizer("int8-dynamic").size(model)
    assert report.params == fp32.params == 64 * 32 + 32 + 32 * 10 + 10
    # int8 weights (1 byte) + fp32 scales (one per row) + fp32 biases
    assert report.bytes == 64 * 32 + 32 * 10 + 4 * (32 + 10) + 4 * (32 + 10)
    assert report.bytes < fp32.bytes / 3


def test_llama_tied_head_stays_float_and_hf_export_round_trips(tmp_path):
    model = _tiny_llama()
    ids = torch.randint(0, 96, (2, 9))
    with torch.no_grad():
        ref = model(ids).logits
        quantize_(model, DynamicInt8Config())
        out = model(ids).logits
    assert type(model.lm_head) is nn.Linear  # tied to the embedding: left in float
    assert isinstance(model.model.layers[0].mlp.down_proj, DynamicInt8Linear)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    export_model(model, tmp_path / "lm")
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "shrinkwrap"  # plain from_pretrained warns
    assert "quantization_config" not in model.config.to_dict()  # the live model is left as it was
    loaded = load_export(tmp_path / "lm")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, out)
        generated = loaded.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
    assert generated.shape == (2, 12)


def test_bert_classifier_skip_list_and_hf_export(tmp_path):
    model = _tiny_bert()
    ids = torch.randint(0, 96, (3, 8))
    with torch.no_grad():
        ref = model(ids).logits
        quantize_(model, DynamicInt8Config(skip_modules=["classifier"]))
        out = model(ids).logits
    assert type(model.classifier) is nn.Linear
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
    export_model(model, tmp_path / "bert")
    with torch.no_grad():
        assert torch.equal(load_export(tmp_path / "bert")(ids).logits, out)


@pytest.mark.parametrize("int_mm", [True, False], ids=["int_mm", "dequantized"])
@pytest.mark.parametrize("rows", [3, 12], ids=["fbgemm-per-row", "batch"])
def test_activation_scales_are_per_token(rows, int_mm, monkeypatch):
    """An outlier token must not cost the other tokens of its batch their precision, on either batch path
    (int8 x int8 on AVX512 CPUs, dequantized weights elsewhere)."""
    import compress.quantize.dynamic_int8 as dyn

    monkeypatch.setattr(dyn, "INT_MM_FAST", int_mm)
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    layer = DynamicInt8Linear.from_linear(linear)
    x = torch.randn(rows, 64)
    x[-1] *= 1000.0  # one outlier token
    with torch.no_grad():
        ref, out = linear(x), layer(x)
    err = (out[:-1] - ref[:-1]).abs().max() / ref[:-1].abs().max()
    assert err < 0.03, f"relative error {err:.3f} on the ordinary tokens"
