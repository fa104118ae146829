"""Issue 18: the timing protocol (exclusive lock, fixed threads, host context), peak memory of a fresh
load (weights included, absent when not measured), logical sizes of 4-bit and pruned models."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from compress.evaluate.memory import input_spec, make_input, peak_memory_subprocess
from compress.evaluate.system import latency, model_size, system_metrics
from compress.evaluate.timing import exclusive_timing, host_context, host_metrics
from compress.models import MLP
from compress.quantize import NF4Config, quantize_


def test_concurrent_latency_phases_do_not_interleave():
    calls: list[str] = []

    def timed(name: str):
        def fn():
            calls.append(name)
            time.sleep(0.002)  # gives the other thread every chance to interleave
        return lambda: latency(fn, warmup=1, iters=8)

    threads = [threading.Thread(target=timed(n)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    switches = sum(1 for x, y in zip(calls, calls[1:], strict=False) if x != y)
    assert switches == 1, f"timing phases interleaved: {''.join(calls)}"


def test_latency_runs_on_fixed_threads_records_them_and_restores():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seen: list[int] = []
        out = latency(lambda: seen.append(torch.get_num_threads()), warmup=1, iters=3, threads=2)
        assert seen == [2, 2, 2, 2] and out["threads"] == 2.0
        assert torch.get_num_threads() == 1
        with exclusive_timing(3) as n:
            assert n == 3 and torch.get_num_threads() == 3
            latency(lambda: None, iters=1)  # re-entrant in the same thread
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_host_context_has_the_like_for_like_fields(monkeypatch):
    monkeypatch.setenv("SHRINKWRAP_TIMING_THREADS", "2")
    ctx = host_context()
    assert ctx["threads"] == 2 and ctx["cpu_count"] >= 1 and ctx["cpu_model"]
    assert ctx["load_avg_1m"] >= 0 and len(ctx["fingerprint"]) == 16
    assert host_context()["fingerprint"] == ctx["fingerprint"]
    assert host_context(threads=1)["fingerprint"] != ctx["fingerprint"]
    metrics = host_metrics(ctx)
    assert metrics["threads"] == 2.0 and "load_avg_1m" in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    monkeypatch.setenv("SHRINKWRAP_TIMING_THREADS", "zero")
    with pytest.raises(ValueError, match="SHRINKWRAP_TIMING_THREADS"):
        host_context()


def _export(model: nn.Module, dest):
    from compress.export import export_model

    return export_model(model, dest).path


def test_peak_memory_of_a_fresh_load_includes_the_weights(tmp_path):
    torch.manual_seed(0)
    model = MLP(1024, (2048,), 1024).eval()  # 16.8 MB of fp32 weights
    path = _export(model, tmp_path / "fp32")
    example = torch.randn(4, 1024)
    out = system_metrics(model, example, warmup=1, iters=2, path=path)
    assert out["peak_memory_bytes"] >= out["weight_bytes"] > 0  # weights included, never 0
    assert out["peak_memory_ratio"] == pytest.approx(out["peak_memory_bytes"] / out["estimate_bytes"])
    assert out["threads"] >= 1
    assert "peak_memory_bytes" not in system_metrics(model, example, warmup=0, iters=1)  # not measured
    assert "peak_memory_bytes" not in system_metrics(model, example, warmup=0, iters=1, path=path, memory=False)
    assert peak_memory_subprocess(tmp_path / "missing", input_spec(example)) is None


def test_input_spec_round_trips_tensors_and_keyword_dicts():
    spec = input_spec({"input_ids": torch.zeros(2, 5, dtype=torch.long), "x": torch.zeros(3, dtype=torch.float16)})
    assert spec == {"kwargs": {"input_ids": {"shape": [2, 5], "dtype": "int64"},
                               "x": {"shape": [3], "dtype": "float16"}}}
    made = make_input(spec)
    assert made["input_ids"].dtype == torch.long and made["x"].shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        make_input({"dtype": "nonsense"})


def test_nf4_layer_counts_logical_params_and_absmax_bytes():
    model = nn.Sequential(nn.Linear(1536, 576, bias=False))  # weight (576, 1536)
    quantize_(model, NF4Config())
    size = model_size(model)
    assert size.params == 576 * 1536 == 884_736
    absmax = 576 * 1536 // 64 * 4  # one fp32 scale per block of 64
    assert size.bytes == 576 * 1536 // 2 + absmax + 16 * 4  # packed + absmax + nf4 code
    assert size.nonzero == size.params


def test_pruned_variant_reports_nonzero_params_and_retained_fraction():
    model = nn.Sequential(nn.Linear(8, 4, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[:, :2] = 0  # 8 of 32 pruned
    out = system_metrics(model, torch.randn(2, 8), warmup=0, iters=1)
    assert out["params"] == 32 and out["nonzero_params"] == 24 and out["retained_fraction"] == 0.75
