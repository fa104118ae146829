"""The pure-torch dequantizer against bitsandbytes: bit-exact for 4-bit, and the int8 formula."""

import bitsandbytes as bnb
import bitsandbytes.functional as BF
import pytest
import torch
from torch import nn

from compress.quantize import FP4Config, Int8Config, NF4Config, quantize_
from compress.quantize.dequant import dequantize_state_dict, quantized_prefixes, unpack_quant_state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", [NF4Config(), NF4Config(double_quant=True), FP4Config(),
                                    FP4Config(double_quant=True)], ids=lambda c: str(c.to_dict()))
def test_4bit_dequant_is_bit_exact_with_bitsandbytes(config, dtype):
    torch.manual_seed(0)
    # in_features multiples of 64: bitsandbytes' CPU kernel is only right there (see compress.quantize.bnb)
    model = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 40))
    model = model.to(dtype)
    quantize_(model, config)
    ours = dequantize_state_dict(model.state_dict())
    for name in ("0", "2"):
        param = model.get_submodule(name).weight
        ref = BF.dequantize_4bit(param.data, param.quant_state)  # bitsandbytes' own kernel
        assert ours[f"{name}.weight"].dtype == ref.dtype == dtype
        assert torch.equal(ours[f"{name}.weight"], ref)
    assert set(ours) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_int8_dequant_matches_bitsandbytes_dequant_matmul():
    """bitsandbytes' CPU training path multiplies x by weight * SCB / 127; ours must give the same."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 24))
    quantize_(model, Int8Config(threshold=0.0))
    layer = model[0].train()  # CPU + training -> MatMul8bitFp: dequantize then F.linear
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = layer(x)
    w = dequantize_state_dict(model.state_dict())["0.weight"]
    assert torch.equal(torch.nn.functional.linear(x, w, layer.bias), ref)


def test_quant_state_blob_and_prefixes():
    model = nn.Sequential(nn.Sequential(nn.Linear(64, 8)), nn.Sequential(nn.Linear(8, 8)))
    quantize_(model[0], NF4Config())
    quantize_(model[1], Int8Config())
    sd = model.state_dict()
    assert quantized_prefixes(sd) == {"0.0.": "nf4", "1.0.": "int8"}
    state = unpack_quant_state(sd["0.0.weight.quant_state.bitsandbytes__nf4"])
    assert state["shape"] == [8, 64] and state["blocksize"] == 64 and state["dtype"] == "float32"


def test_truncated_packed_weight_is_rejected():
    model = nn.Sequential(nn.Linear(64, 8))
    quantize_(model, NF4Config())
    sd = dict(model.state_dict())
    sd["0.weight"] = sd["0.weight"][:-1]
    with pytest.raises(ValueError, match="needs 256"):
        dequantize_state_dict(sd)


@pytest.mark.gpu
def test_cuda_quantization_matches_cpu_dequant():
    """CUDA-only kernels (int8 double quant in the training path, CUDA 4-bit quantize): the weights
    quantized on the GPU dequantize identically in pure torch on the CPU."""
    torch.manual_seed(0)
    lin = nn.Linear(256, 64)
    for config in (NF4Config(double_quant=True), Int8Config()):
        model = nn.Sequential(nn.Linear(256, 64)).cuda()
        model[0].load_state_dict(lin.state_dict())
        quantize_(model, config)
        sd = {k: v.cpu() for k, v in model.state_dict().items()}
        ours = dequantize_state_dict(sd)["0.weight"]
        if isinstance(config, NF4Config):
            ref = BF.dequantize_4bit(model[0].weight.data, model[0].weight.quant_state).cpu()
            assert torch.equal(ours, ref)
        else:
            x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
            CA, CAt, SCA, SCAt, _ = BF.int8_double_quant(x)
            assert CA.dtype == torch.int8 and isinstance(model[0], bnb.nn.Linear8bitLt)
            assert (ours - lin.weight).abs().max() < lin.weight.abs().max() / 100
