"""quantize_ on plain torch models: configs, registry, layer swap and the HF BitsAndBytesConfig mapping."""

import bitsandbytes as bnb
import pytest
import torch
from torch import nn

from compress.models import MLP, MnistCNN
from compress.quantize import (
    QUANTIZERS,
    FP4Config,
    Int8Config,
    NF4Config,
    quantization_info,
    quantize_,
    to_bnb_config,
)
from compress.quantize.bnb import is_skipped

CONFIGS = [Int8Config(), NF4Config(), NF4Config(double_quant=True), FP4Config(), FP4Config(compute_dtype="bfloat16")]
# max |logit error| / max |logit| of the quantized MLP on random pixels: int8 ~0.5%, 4-bit ~10%
TOLERANCE = {"Int8Config": 0.02, "NF4Config": 0.25, "FP4Config": 0.3}


@pytest.mark.parametrize("bad", [
    lambda: Int8Config(threshold=-1.0),
    lambda: Int8Config(skip_modules="lm_head"),
    lambda: NF4Config(compute_dtype="int8"),
    lambda: FP4Config(double_quant="yes"),
    lambda: NF4Config(skip_modules=[""]),
])
def test_configs_reject_bad_values(bad):
    with pytest.raises(ValueError, match="got"):
        bad()


def test_config_dict_and_hash_record_the_type():
    a, b = NF4Config(), FP4Config()
    assert a.to_dict()["type"] == "NF4Config" and a.config_hash() != b.config_hash()
    assert NF4Config(skip_modules=["x"]).skip_modules == ("x",)


def test_registry_has_every_config_and_refuses_unknown():
    from compress.techniques import load_all

    load_all()  # the table fills as technique modules are imported; alone, this file imports only some
    assert {"none", "int8", "nf4", "fp4"} <= set(QUANTIZERS)
    assert {QUANTIZERS[n].config for n in ("int8", "nf4", "fp4")} == {Int8Config, NF4Config, FP4Config}

    class Other(Int8Config):
        pass

    with pytest.raises(TypeError, match="no quantizer for Other"):
        quantize_(MLP(), Other())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{type(c).__name__}-{c.to_dict()}")
@pytest.mark.parametrize("arch", [lambda: MLP(784, (64,), 10), lambda: MnistCNN((4, 8), 32)], ids=["mlp", "cnn"])
def test_quantize_swaps_linears_and_stays_close(config, arch):
    torch.manual_seed(0)
    model = arch().eval()
    x = torch.rand(8, 784)
    with torch.no_grad():
        ref = model(x)
        assert quantize_(model, config) is model
        out = model(x)
    kinds = {info["kind"] for info in quantization_info(model).values()}
    assert kinds == {"int8"} if isinstance(config, Int8Config) else {config.quant_type}
    assert not any(type(m) is nn.Linear for m in model.modules())
    rel = (out - ref).abs().max().item() / ref.abs().max().item()
    assert rel < TOLERANCE[type(config).__name__], rel
    assert model.quantization_config["type"] == type(config).__name__


def test_4bit_layer_with_width_not_multiple_of_block_is_correct_on_cpu():
    """bitsandbytes 0.50's CPU 4-bit dequant kernel is wrong for in_features % 64 != 0; ours is not."""
    torch.manual_seed(0)
    lin = nn.Linear(784, 32)
    model = nn.Sequential(lin)
    ref_w = lin.weight.detach().clone()
    quantize_(model, NF4Config())
    layer = model[0]
    w = layer(torch.eye(784)).detach() - layer.bias.detach()  # (784, 32): row i = W[:, i]
    err = (w.T - ref_w).abs().max().item()
    assert err <= 0.6 * ref_w.abs().max().item() / 3, err  # a 4-bit step, not a misindexed block


def test_skip_modules_keep_float_layers():
    model = MLP(784, (32, 16), 10)
    quantize_(model, Int8Config(skip_modules=("layers.4",)))
    assert type(model.layers[4]) is nn.Linear
    assert isinstance(model.layers[0], bnb.nn.Linear8bitLt)
    assert is_skipped("model.lm_head", ["lm_head"]) and not is_skipped("layers.40", ["layers.4"])


def test_nothing_to_quantize_is_an_error():
    with pytest.raises(ValueError, match="found no nn.Linear"):
        quantize_(MLP(784, (), 10), Int8Config(skip_modules=("layers",)))


def test_hf_models_are_sent_to_load_quantized_hf():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(TypeError, match="load_quantized_hf"):
        quantize_(LlamaForCausalLM(cfg), Int8Config())


def test_to_bnb_config_maps_every_field():
    c8 = to_bnb_config(Int8Config(threshold=4.0, skip_modules=("lm_head", "mlp.down_proj")))
    assert c8.load_in_8bit and c8.llm_int8_threshold == 4.0
    assert c8.llm_int8_skip_modules == ["lm_head", "mlp.down_proj"]
    c4 = to_bnb_config(FP4Config(double_quant=True, compute_dtype="bfloat16"))
    assert c4.load_in_4bit and c4.bnb_4bit_quant_type == "fp4" and c4.bnb_4bit_use_double_quant
    assert c4.bnb_4bit_compute_dtype == torch.bfloat16 and c4.llm_int8_skip_modules is None
    assert to_bnb_config(NF4Config()).bnb_4bit_quant_type == "nf4"


def test_bitsandbytes_is_imported_only_when_a_bitsandbytes_layer_is_made():
    """Start-up: the technique table and the recipe models must not import bitsandbytes (it pulls in
    torch._dynamo, ~3 s on every `shrinkwrap run`); making a 4-bit layer does, and the layer pickles by name."""
    import subprocess
    import sys

    code = ("import sys, pickle, torch\n"
            "import flows.recipe, compress.techniques\n"
            "from compress.techniques import quantized_layers\n"
            "assert quantized_layers(torch.nn.Sequential(torch.nn.Linear(4, 4))) == {}\n"
            "print('before', 'bitsandbytes' in sys.modules)\n"
            "from compress.quantize.bnb import to_linear4bit\n"
            "layer = pickle.loads(pickle.dumps(to_linear4bit(torch.nn.Linear(128, 8), 'nf4', False, 'float32')))\n"
            "print('after', 'bitsandbytes' in sys.modules, type(layer).__qualname__, tuple(layer(torch.ones(1, 128)).shape))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["before False", "after True SafeLinear4bit (1, 8)"]


def test_describe_hooks_ignore_bitsandbytes_while_another_thread_imports_it(monkeypatch):
    """Parallel variants: one thread imports bitsandbytes while another asks which layers are quantized.
    The half-imported module (no `nn` yet) must read as "not imported", not raise AttributeError."""
    import sys
    import types
    from importlib.machinery import ModuleSpec

    from compress.techniques import quantized_layers

    partial = types.ModuleType("bitsandbytes")
    partial.__spec__ = ModuleSpec("bitsandbytes", None)
    partial.__spec__._initializing = True
    monkeypatch.setitem(sys.modules, "bitsandbytes", partial)
    assert quantized_layers(nn.Sequential(nn.Linear(4, 4))) == {}
