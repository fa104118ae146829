"""Issue 18 for causal LMs: logical parameters and bytes with absmax for 4-bit, tokens/s with a warm-up,
enough tokens and recorded threads."""

from __future__ import annotations

import torch

from compress.evaluate.lm import generation_speed, lm_metrics
from compress.evaluate.system import weight_bytes

TEXTS = ["The quick brown fox jumps over the lazy dog.", "A stitch in time saves nine, they said."]


def test_nf4_causal_lm_counts_logical_parameters_and_absmax(tmp_path, tokenizer, make_tiny):
    from compress.quantize import NF4Config
    from compress.quantize.api import load_quantized_hf

    model = make_tiny(layers=1, hidden=64)
    float_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    q, _ = load_quantized_hf(str(tmp_path / "m"), NF4Config())
    out = lm_metrics(q, tokenizer, TEXTS, max_new_tokens=2, min_tokens=4)
    assert out["parameters"] == float_params  # packed 4-bit counted unpacked
    packed = [p for p in q.parameters() if getattr(p, "quant_state", None) is not None]
    assert packed, "the tiny model has no 4-bit layer; the test checks nothing"
    absmax = sum(p.quant_state.absmax.nbytes for p in packed)
    stored = sum(t.nbytes for t in list(q.parameters()) + list(q.buffers()))
    assert out["bytes"] == weight_bytes(q) >= stored + absmax


def test_generation_speed_warms_up_times_enough_tokens_on_fixed_threads(tokenizer, tiny_teacher):
    before = torch.get_num_threads()
    calls = []
    original = tiny_teacher.generate
    tiny_teacher.generate = lambda **kw: calls.append(kw["max_new_tokens"]) or original(**kw)
    try:
        out = generation_speed(tiny_teacher, tokenizer, TEXTS, max_new_tokens=3, min_tokens=10, threads=1)
    finally:
        del tiny_teacher.generate
    assert calls[0] == 3 and len(calls) == 1 + 2  # warm-up, then the prompt set twice: 2 x 2 x 3 >= 10
    assert out["new_tokens"] == 12 and out["threads"] == 1.0
    assert torch.get_num_threads() == before
