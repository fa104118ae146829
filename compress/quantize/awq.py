"""AWQ-style activation-aware scaling of a Llama decoder block, folded into the weights before GPTQ.

Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration",
https://arxiv.org/abs/2306.00978. Input channels with large activations matter most; scaling weight
column c up by s_c (and the activation down by 1/s_c, folded into the preceding RMSNorm weight or
linear) shrinks their relative rounding error. s = mean|x|^alpha (normalised), with alpha picked per
group from a grid by the output error of round-to-nearest quantization on calibration tokens. The
model computes exactly the same function after scaling (before quantization).

Groups of a Llama block (the ones AWQ and llm-compressor use; v -> o is skipped: with grouped-query
attention one v channel feeds several heads):
    input_layernorm -> q_proj, k_proj, v_proj;  post_attention_layernorm -> gate_proj, up_proj;
    up_proj -> down_proj.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.quantize import gptq

ALPHAS = tuple(i / 10 for i in range(11))   # 0 (no scaling) .. 1; 0 keeps AWQ from ever doing harm
MAX_TOKENS = 1024                            # tokens used to score each alpha (cost ~ tokens x grid)


def _groups(block: nn.Module) -> list[tuple[nn.Module, list[nn.Linear], str]]:
    attn, mlp = block.self_attn, block.mlp
    return [(block.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], "self_attn.q_proj"),
            (block.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], "mlp.gate_proj"),
            (mlp.up_proj, [mlp.down_proj], "mlp.down_proj")]


@torch.no_grad()
def _group_inputs(block: nn.Module, inputs, names: list[str]) -> dict[str, torch.Tensor]:
    """Up to MAX_TOKENS input rows of each named linear of `block`, evenly spread over the calibration."""
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [block.get_submodule(n).register_forward_pre_hook(
        lambda m, a, n=n: rows[n].append(a[0].reshape(-1, a[0].shape[-1]))) for n in names]
    try:
        for hidden, kwargs in inputs:
            block(hidden, **kwargs)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, parts in rows.items():
        x = torch.cat(parts)                                                    # (tokens, in)
        out[name] = x[torch.linspace(0, len(x) - 1, min(MAX_TOKENS, len(x))).long()]
    return out


def _best_scales(x: torch.Tensor, linears: list[nn.Linear], bits: int, group_size: int, sym: bool) -> torch.Tensor:
    """Per-input-channel scales (in,) minimising ||x W^T - (x / s) Q(W s)^T||^2 over ALPHAS."""
    w = torch.cat([lin.weight.float() for lin in linears])                      # (sum out, in)
    ref = x @ w.T
    x_mean = x.abs().mean(0).clamp(min=1e-8)                                    # (in,)
    best, best_err = torch.ones_like(x_mean), float("inf")
    for alpha in ALPHAS:
        s = x_mean.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        _, q, _ = gptq.rtn_quantize(w * s, bits, group_size, sym=sym)
        err = ((x / s) @ q.T - ref).pow(2).mean().item()
        if err < best_err:
            best, best_err = s, err
    return best


@torch.no_grad()
def scale_block(block: nn.Module, inputs, *, bits: int, group_size: int, sym: bool) -> dict[str, float]:
    """Fold AWQ scales into `block` in place (same function in float); returns the chosen mean scale
    per group. `inputs`: (hidden states, kwargs) per calibration batch, as the GPTQ driver holds."""
    for attr in ("input_layernorm", "post_attention_layernorm", "self_attn", "mlp"):
        if not hasattr(block, attr):
            raise TypeError(f"AWQ scaling knows Llama-style blocks (input_layernorm, self_attn.q/k/v_proj, "
                            f"mlp.gate/up/down_proj); {type(block).__name__} has no {attr}. Use awq=false")
    chosen, groups = {}, _groups(block)
    xs = _group_inputs(block, inputs, [first for _, _, first in groups])  # folds keep the float function,
    for prev, linears, first in groups:                                     # so one capture serves all groups
        s = _best_scales(xs[first], linears, bits, group_size, sym)
        prev.weight.div_(s.view(-1, *([1] * (prev.weight.dim() - 1))).to(prev.weight.dtype))
        if getattr(prev, "bias", None) is not None:
            prev.bias.div_(s)
        for lin in linears:
            lin.weight.mul_(s.to(lin.weight.dtype))
        chosen[first] = float(s.mean())
    return chosen
