"""GPTQ: the layer math against references (exact grid, diagonal Hessian = round-to-nearest, lower
reconstruction error than round-to-nearest), the `gptq` technique on a tiny random Llama, bad input,
and the compressed-tensors export loaded by plain transformers in a process without shrinkwrap."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from compress.export import load_export
from compress.export.compressed_tensors import save_export
from compress.quantize import gptq
from compress.quantize.calibrated import GPTQConfig, QuantLinear, calibration_batches
from compress.techniques import QUANT_MODULES, quantizer

GEN = torch.Generator().manual_seed(0)
IDS = torch.randint(0, 96, (2, 24), generator=GEN)


def _correlated_hessian(cols: int, n: int = 1024) -> torch.Tensor:
    x = torch.randn(n, cols, generator=GEN) @ torch.randn(cols, cols, generator=GEN) * 0.3 + torch.randn(n, cols, generator=GEN)
    return 2 * x.T @ x / n


def _tiny(hidden: int = 64, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def _calibration(n: int = 8, seq: int = 32) -> list[torch.Tensor]:
    return [torch.randint(0, 96, (1, seq), generator=torch.Generator().manual_seed(i)) for i in range(n)]


def _nll(model) -> float:
    with torch.no_grad():
        logits = model(IDS).logits
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), IDS[:, 1:].reshape(-1)).item()


@pytest.mark.parametrize("bits", [4, 8])
def test_pack_round_trip_and_matches_compressed_tensors(bits):
    codes = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (12, 64), generator=GEN, dtype=torch.int32)
    packed = gptq.pack_int32(codes, bits)
    assert packed.dtype == torch.int32 and packed.shape == (12, 64 * bits // 32)
    assert torch.equal(gptq.unpack_int32(packed, bits, (12, 64)), codes)
    zeros = codes[:, :3]
    assert torch.equal(gptq.unpack_int32(gptq.pack_int32(zeros, bits, dim=0), bits, (12, 3), dim=0), zeros)
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    assert torch.equal(packed, helpers.pack_to_int32(codes.to(torch.int8), bits))
    assert torch.equal(gptq.pack_int32(zeros, bits, dim=0), helpers.pack_to_int32(zeros.to(torch.int8), bits, packed_dim=0))


@pytest.mark.parametrize("act_order", [False, True])
def test_weights_on_the_grid_come_out_exact(act_order):
    """Asymmetric groups whose codes span -8..7: min/max recover scale and zero exactly, so a weight
    already on the grid has zero rounding error and GPTQ has nothing to compensate."""
    codes = torch.randint(-8, 8, (16, 128), generator=GEN, dtype=torch.int32)
    codes[:, ::32], codes[:, 1::32] = -8, 7
    zero = torch.randint(-8, 8, (16, 4), generator=GEN, dtype=torch.int32)
    scale = (torch.rand(16, 4, generator=GEN) + 0.1).half().float()
    on_grid = gptq.dequantize(codes, gptq.QuantGrid(4, scale, zero), 32)
    got_codes, got, grid = gptq.gptq_quantize(on_grid, _correlated_hessian(128), bits=4, group_size=32, sym=False,
                                              act_order=act_order)
    assert torch.equal(got_codes, codes) and torch.equal(grid.zero, zero) and torch.equal(grid.scale, scale)
    assert torch.equal(got, on_grid)


def test_diagonal_hessian_equals_round_to_nearest():
    w = torch.randn(8, 64, generator=GEN)
    h = torch.diag(torch.rand(64, generator=GEN) + 0.5)
    codes, deq, _ = gptq.gptq_quantize(w, h, bits=4, group_size=32, sym=True)
    rtn_codes, rtn, _ = gptq.rtn_quantize(w, 4, 32, sym=True)
    assert torch.equal(codes, rtn_codes) and torch.allclose(deq, rtn)


@pytest.mark.parametrize("sym,act_order,mse", [(True, False, False), (False, True, False), (True, True, True)])
def test_gptq_beats_round_to_nearest_on_correlated_inputs(sym, act_order, mse):
    w, h = torch.randn(32, 128, generator=GEN), _correlated_hessian(128)
    _, deq, grid = gptq.gptq_quantize(w, h, bits=4, group_size=64, sym=sym, act_order=act_order, mse=mse)
    _, rtn, _ = gptq.rtn_quantize(w, 4, 64, sym=sym, mse=mse)
    assert gptq.reconstruction_error(w, deq, h) < 0.8 * gptq.reconstruction_error(w, rtn, h)
    assert grid.scale.shape == (32, 2) and (sym or grid.zero.abs().sum() > 0)


def test_reconstruction_error_is_the_output_error():
    x, w = torch.randn(256, 32, generator=GEN), torch.randn(8, 32, generator=GEN)
    q = w + 0.01 * torch.randn(8, 32, generator=GEN)
    direct = ((x @ w.T - x @ q.T) ** 2).sum().item() / 256
    assert math.isclose(gptq.reconstruction_error(w, q, 2 * x.T @ x / 256), direct, rel_tol=1e-6)


def test_technique_is_registered_and_needs_calibration():
    assert "compress.quantize.calibrated" in QUANT_MODULES
    technique = quantizer("gptq")
    assert technique.needs_calibration and technique.config is GPTQConfig


@pytest.mark.parametrize("options", [{"sym": True}, {"sym": False, "act_order": False, "group_size": 32}])
def test_tiny_llama_every_layer_beats_round_to_nearest(options):
    model, technique = _tiny(), quantizer("gptq")
    fp_nll = _nll(model)
    technique.apply(model, technique.make_config(options), _calibration())
    layers = model.gptq_report["layers"]
    assert len(layers) == 14 and all(isinstance(model.get_submodule(n), QuantLinear) for n in layers)
    assert all(v["gptq_error"] < v["rtn_error"] for v in layers.values()), layers
    assert model.gptq_report["group_size"] == options.get("group_size", 64)
    assert abs(_nll(model) - fp_nll) < 0.05
    size = technique.size(model)
    assert size.params == sum(p.numel() for p in _tiny().parameters())


def test_group_size_default_and_bad_group_size():
    model = _tiny(hidden=96)  # in_features 96 and 192: 32 divides both, 64 and 128 do not
    quantizer("gptq").apply(model, GPTQConfig(), _calibration(n=8, seq=32))
    assert model.gptq_report["group_size"] == 32
    with pytest.raises(ValueError, match="group_size 64 does not divide .*in_features 96"):
        quantizer("gptq").apply(_tiny(hidden=96), GPTQConfig(group_size=64), _calibration())


def test_bad_calibration_and_architecture():
    technique = quantizer("gptq")
    with pytest.raises(TypeError, match="gptq needs calibration"):
        technique.apply(_tiny(), GPTQConfig(), None)
    with pytest.raises(ValueError, match="calibration too small: 2 sequences"):
        technique.apply(_tiny(), GPTQConfig(), _calibration(n=2))
    with pytest.raises(ValueError, match="calibration too small: 4 sequences, 32 tokens"):
        technique.apply(_tiny(), GPTQConfig(), _calibration(n=4, seq=8))
    with pytest.raises(TypeError, match="model.model.layers"):
        technique.apply(nn.Sequential(nn.Linear(64, 64)), GPTQConfig(), _calibration())
    with pytest.raises(ValueError, match="bits must be 2, 4 or 8"):
        GPTQConfig(bits=3)
    with pytest.raises(ValueError, match="keep_8bit needs sym=true"):
        GPTQConfig(sym=False, keep_8bit=["down_proj"])


def test_calibration_batches():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, **{f"w{i}": i for i in range(2, 40)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>")
    texts = [" ".join(f"w{2 + (i + j) % 38}" for j in range(30)) for i in range(5)]
    batches = calibration_batches(tok, texts, 6, 20)
    assert len(batches) == 6 and all(b.shape == (1, 20) and b.dtype == torch.long for b in batches)
    assert batches[1][0, 10].item() == tok.eos_token_id  # texts joined with EOS: 30 tokens + EOS
    with pytest.raises(ValueError, match="fewer than n_samples"):
        calibration_batches(tok, texts, 100, 20)


@pytest.mark.parametrize("options", [{"sym": True}, {"sym": False, "group_size": 32},
                                     {"sym": True, "keep_8bit": ["layers.1.mlp.down_proj", "0.self_attn.k_proj"]}])
def test_compressed_tensors_export_loads_without_shrinkwrap(options, tmp_path):
    pytest.importorskip("compressed_tensors")
    model = _tiny()
    quantizer("gptq").apply(model, GPTQConfig(**options), _calibration())
    recorded = math.exp(_nll(model))
    with torch.no_grad():
        torch.save(model(IDS).logits, tmp_path / "logits.pt")
    res = save_export(model, None, tmp_path / "ct")
    config = json.loads((res.path / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    assert len(config["config_groups"]) == (2 if "keep_8bit" in options else 1)
    torch.save(IDS, tmp_path / "ids.pt")
    code = ("import math, os, sys\n"  # drop every sys.path entry holding our package (editable installs)
            "sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p, 'compress', 'techniques.py'))]\n"
            "import torch\n"
            "from transformers import AutoModelForCausalLM\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(res.path)!r}).eval()\n"
            f"ids = torch.load({str(tmp_path / 'ids.pt')!r})\n"
            "with torch.no_grad(): logits = m(ids).logits\n"
            "nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('compress', 'shrinkwrap')]\n"
            f"print((logits - torch.load({str(tmp_path / 'logits.pt')!r})).abs().max().item(), math.exp(nll.item()))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    logits_diff, reloaded = (float(v) for v in out.stdout.split()[-2:])
    assert logits_diff < 1e-3 and abs(reloaded / recorded - 1) < 0.005, (logits_diff, reloaded, recorded)
    loaded = load_export(res.path)
    assert abs(math.exp(_nll(loaded)) / recorded - 1) < 0.005


def test_awq_scaling_keeps_the_float_function_and_runs_before_gptq():
    from compress.quantize.awq import scale_block
    from compress.quantize.calibrated import _first_block_inputs

    model = _tiny()
    with torch.no_grad():
        for layer in model.model.layers:  # uneven input channels, as in trained LMs
            layer.input_layernorm.weight.copy_(torch.rand(64, generator=GEN) * 3)
        before = model(IDS).logits
    inputs = _first_block_inputs(model, _calibration())
    chosen = scale_block(model.model.layers[0], inputs, bits=4, group_size=64, sym=True)
    assert set(chosen) == {"self_attn.q_proj", "mlp.gate_proj", "mlp.down_proj"}
    with torch.no_grad():
        assert torch.allclose(model(IDS).logits, before, atol=1e-4)
    model = _tiny()
    quantizer("gptq").apply(model, GPTQConfig(awq=True), _calibration())
    assert all(v["gptq_error"] < v["rtn_error"] for v in model.gptq_report["layers"].values())
