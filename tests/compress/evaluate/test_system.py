"""System metrics against hand-computed values: bytes of known layers, percentiles, call counts."""

import pytest
import torch
from torch import nn

from compress.evaluate.system import (
    estimate_bytes,
    file_bytes,
    latency,
    parameter_count,
    peak_memory,
    percentile,
    runtime_comparison,
    system_metrics,
    weight_bytes,
)
from compress.quantize import Int8Config, NF4Config, quantize_


def test_weight_bytes_of_float_layers_and_shared_storage():
    lin = nn.Linear(64, 32)
    assert weight_bytes(lin) == (64 * 32 + 32) * 4
    assert weight_bytes(lin.to(torch.bfloat16)) == (64 * 32 + 32) * 2
    emb = nn.Embedding(10, 8)
    head = nn.Linear(8, 10, bias=False)
    head.weight = emb.weight  # tied: stored once
    assert weight_bytes(nn.ModuleList([emb, head])) == 10 * 8 * 4
    bn = nn.BatchNorm1d(5)  # 2 params + running mean/var (float) + num_batches_tracked (int64)
    assert weight_bytes(bn) == 4 * 5 * 4 + 8


def test_weight_bytes_of_int8_layer_counts_scales():
    model = nn.Sequential(nn.Linear(64, 32))
    quantize_(model, Int8Config())
    expected = 32 * 64 * 1 + 32 * 4 + 32 * 4  # int8 weight + SCB (fp32 per row) + fp32 bias
    assert weight_bytes(model) == expected
    with torch.no_grad():
        model.eval()(torch.randn(2, 64))  # forward moves CB/SCB into the layer state: same bytes
    assert weight_bytes(model) == expected
    assert parameter_count(model) == 64 * 32 + 32
    assert estimate_bytes(model) == 64 * 32 * 1 + 32 * 4


@pytest.mark.parametrize("double_quant", [False, True])
def test_weight_bytes_of_nf4_layer_counts_quant_state(double_quant):
    model = nn.Sequential(nn.Linear(64, 32))
    quantize_(model, NF4Config(double_quant=double_quant))
    packed = 64 * 32 // 2
    # double quant: uint8 absmax per 64 values, nf4 code (16 fp32), offset, nested absmax + 256-entry code;
    # else: fp32 absmax per block of 64 values + the 16-entry code
    state = 32 * 1 + 16 * 4 + 4 + 1 * 4 + 256 * 4 if double_quant else 32 * 4 + 16 * 4
    assert weight_bytes(model) == packed + state + 32 * 4
    assert parameter_count(model) == 64 * 32 + 32  # logical, not the packed byte count
    assert estimate_bytes(model) == 64 * 32 * 0.5 + 32 * 4
    assert estimate_bytes(model, 4) == (64 * 32 + 32) * 4
    with pytest.raises(ValueError, match="bytes_per_param"):
        estimate_bytes(model, 0)


def test_percentile_matches_hand_values():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_counts_warmup_and_iters():
    calls = []
    out = latency(lambda: calls.append(1), warmup=2, iters=5)
    assert len(calls) == 7
    assert 0 <= out["p50_ms"] <= out["p95_ms"]
    with pytest.raises(ValueError, match="iters"):
        latency(lambda: None, iters=0)


def test_peak_memory_sees_a_transient_allocation():
    size = 64 * 2**20

    def alloc():
        t = torch.ones(size // 4, dtype=torch.float32)  # touched, so resident
        return t.sum().item()

    peak = peak_memory(alloc, device="cpu")
    assert size * 0.9 <= peak <= size * 4, peak


def test_file_bytes_of_file_and_folder(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 28)
    assert file_bytes(tmp_path / "a.bin") == 100
    assert file_bytes(tmp_path) == 128
    with pytest.raises(FileNotFoundError):
        file_bytes(tmp_path / "missing")


def test_system_metrics_keys_and_values(tmp_path):
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    (tmp_path / "w").write_bytes(b"z" * 10)
    out = system_metrics(model, torch.randn(3, 16), warmup=1, iters=3, path=tmp_path / "w")
    assert out["params"] == 16 * 8 + 8 + 8 * 4 + 4
    assert out["weight_bytes"] == out["params"] * 4 == out["estimate_bytes"] == out["linear_weight_bytes"]
    assert out["file_bytes"] == 10 and out["latency_p95_ms"] >= out["latency_p50_ms"] >= 0
    assert "peak_memory_bytes" not in out  # a bare file is no export: not measured, so absent (never 0)


def test_runtime_comparison_runs_each_sdpa_backend_and_compile():
    class Attn(nn.Module):
        def forward(self, x):  # (B, H, T, D)
            return nn.functional.scaled_dot_product_attention(x, x, x)

    rows = runtime_comparison(Attn(), torch.randn(1, 2, 8, 16), compile=True, compile_backend="eager",
                              warmup=1, iters=2)
    assert [r["variant"] for r in rows] == ["eager/sdpa=flash", "eager/sdpa=efficient", "eager/sdpa=math",
                                            "compile[eager]"]
    math_row = rows[2]
    assert "error" not in math_row and math_row["p50_ms"] >= 0
    with pytest.raises(ValueError, match="unknown SDPA backend"):
        runtime_comparison(Attn(), torch.randn(1, 2, 8, 16), backends=["fast"])
