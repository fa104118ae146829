"""Structured pruning: physically remove whole neurons / channels, giving a smaller dense model.

Unstructured masks leave the tensor shapes (and dense-kernel latency) unchanged; removing output
rows of a layer together with the matching input columns of the next layer shrinks both. A
"unit" is one output neuron (Linear) or channel (Conv) of a producer layer feeding a consumer.

Which units go:
- dead units always: consumer column all zero, or producer row all zero (its constant activation
  f(bias) is folded into the consumer's bias when the consumer is Linear, so outputs are unchanged);
- then by score = L1 norm of the producer row (gated MLPs: ||gate_j||_1 * ||up_j||_1), either a fixed
  fraction `amount` of the units of each group, or by SAP on the score vector: with
  `config=PQIPruneConfig(...)` a group of n live units keeps n - floor(n * prune_ratio(PQI(scores))),
  the retain bound of Diao et al. (ICLR 2023) applied to neurons instead of weights.

Supported groups:
- Linear/Conv -> elementwise activations / dropout (/ pooling between convs) -> Linear/Conv inside any
  nn.Sequential (covers compress.models.MLP and MnistCNN's features and classifier);
- MnistCNN's last conv -> flatten -> first classifier Linear;
- gated MLPs with gate_proj/up_proj/down_proj (Llama, Mistral, Qwen2 ...): the intermediate size.
  All decoder layers keep the same width (the largest any layer asks for) so `config.intermediate_size`
  stays one number and `save_pretrained`/`from_pretrained` round-trip.
Not supported (left untouched): attention heads, residual streams / hidden size, grouped or
transposed convs, BatchNorm between layers, branches outside nn.Sequential.

Zoo models come back rebuilt from their updated `.spec` (`build_model(spec)` + the pruned weights),
so they export as plain safetensors + spec; other models are modified and returned in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from compress.models import MLP, MnistCNN, build_model
from compress.prune.api import PQIPruneConfig
from compress.prune.pq_index import num_to_prune, pq_index, prune_ratio

_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish,
                nn.Softplus, nn.Hardtanh, nn.Dropout, nn.Identity)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class _Group:
    producers: list[str]  # module names whose output rows are the units
    consumer: str  # module whose input columns are the units
    between: list[str]  # elementwise modules applied to the producer's output (for folding)
    spatial: int = 1  # consumer columns per unit (conv -> flatten -> linear)
    gated: bool = False


def _plain(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, _CONV) and m.groups == 1)


def _sequential_groups(model: nn.Module) -> list[_Group]:
    groups = []
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        kids = list(seq.named_children())
        for i, (name_i, mod_i) in enumerate(kids):
            if not _plain(mod_i):
                continue
            between = []
            for name_j, mod_j in kids[i + 1:]:
                if _plain(mod_j):
                    same_kind = isinstance(mod_i, nn.Linear) == isinstance(mod_j, nn.Linear)
                    width = mod_j.in_features if isinstance(mod_j, nn.Linear) else mod_j.in_channels
                    out = mod_i.out_features if isinstance(mod_i, nn.Linear) else mod_i.out_channels
                    if same_kind and width == out:
                        prefix = f"{seq_name}." if seq_name else ""
                        groups.append(_Group([prefix + name_i], prefix + name_j, [prefix + b for b in between]))
                    break
                ok = isinstance(mod_j, _ELEMENTWISE) or (isinstance(mod_i, _CONV) and isinstance(mod_j, _POOL))
                if not ok:
                    break
                between.append(name_j)
    return groups


def _groups(model: nn.Module) -> list[_Group]:
    groups = _sequential_groups(model)
    if isinstance(model, MnistCNN):
        side = model.image_size // 4
        groups.insert(1, _Group(["features.3"], "classifier.0", ["features.4"], spatial=side * side))
    for name, mod in model.named_modules():
        parts = [getattr(mod, a, None) for a in ("gate_proj", "up_proj", "down_proj")]
        if all(isinstance(p, nn.Linear) for p in parts):
            prefix = f"{name}." if name else ""
            groups.append(_Group([prefix + "gate_proj", prefix + "up_proj"], prefix + "down_proj", [], gated=True))
    return groups


def _out_dim(m: nn.Module) -> int:
    return m.weight.shape[0]


def _activation(model: nn.Module, g: _Group, bias: torch.Tensor) -> torch.Tensor:
    """f(bias) for constant (zero-row) units: the elementwise modules between producer and consumer."""
    v = bias.detach().clone()
    for name in g.between:
        mod = model.get_submodule(name)
        if not isinstance(mod, (nn.Dropout, nn.Identity, *_POOL)):
            v = mod(v)
    return v


def _cols(consumer: nn.Module, g: _Group) -> torch.Tensor:
    """Consumer weight as (units, out * spatial * kernel) so row j = everything unit j feeds."""
    w = consumer.weight.detach()
    w = w.reshape(w.shape[0], -1, g.spatial, *w.shape[2:]) if g.spatial > 1 else w  # (out, units, spatial)
    return w.transpose(0, 1).reshape(w.shape[1], -1)


@torch.no_grad()
def _rank(model: nn.Module, g: _Group) -> tuple[torch.Tensor, int]:
    """Unit scores of group g (dead units get -1) and the number of live units."""
    prods = [model.get_submodule(p) for p in g.producers]
    consumer = model.get_submodule(g.consumer)
    rows = [p.weight.detach().reshape(p.weight.shape[0], -1).float() for p in prods]
    n = rows[0].shape[0]
    unused = (_cols(consumer, g) == 0).all(1)
    zero_row = torch.stack([(r == 0).all(1) for r in rows]).any(0) if g.gated else (rows[0] == 0).all(1)
    if g.gated:
        constant_ok = zero_row & all(p.bias is None for p in prods)
    else:
        bias = prods[0].bias
        f_b = _activation(model, g, bias) if bias is not None else torch.zeros(n)
        foldable = isinstance(consumer, nn.Linear) and consumer.bias is not None
        constant_ok = zero_row & ((f_b == 0) | foldable)
    live = ~(unused | constant_ok)
    score = torch.stack([r.abs().sum(1) for r in rows]).prod(0)  # (units,)
    return torch.where(live, score, torch.full_like(score, -1.0)), int(live.sum())


def _keep_count(ranked: torch.Tensor, n_live: int, amount: float | None, config: PQIPruneConfig | None) -> int:
    n = ranked.numel()
    if amount is not None:
        keep_n = max(1, n - int(math.floor(amount * n + 1e-9)))
    else:
        pqi = pq_index(ranked[ranked >= 0], config.p, config.q)
        ratio = prune_ratio(n_live, pqi, config.p, config.q, config.eta, config.gamma, config.beta)
        keep_n = max(1, n_live - int(num_to_prune(n_live, ratio)))
    return min(keep_n, max(n_live, 1))


def _top(ranked: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(ranked, k).indices).values


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _slice_out(mod: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = _resized(mod, out=len(keep))
    new.weight.copy_(mod.weight[keep])
    if mod.bias is not None:
        new.bias.copy_(mod.bias[keep])
    return new


def _slice_in(mod: nn.Module, keep: torch.Tensor, spatial: int) -> nn.Module:
    cols = (keep[:, None] * spatial + torch.arange(spatial)[None, :]).reshape(-1) if spatial > 1 else keep
    new = _resized(mod, inp=len(cols))
    new.weight.copy_(mod.weight[:, cols])
    if mod.bias is not None:
        new.bias.copy_(mod.bias)
    return new


def _resized(mod: nn.Module, out: int | None = None, inp: int | None = None) -> nn.Module:
    kw = {"device": mod.weight.device, "dtype": mod.weight.dtype}
    if isinstance(mod, nn.Linear):
        return nn.Linear(inp or mod.in_features, out or mod.out_features, bias=mod.bias is not None, **kw)
    return type(mod)(inp or mod.in_channels, out or mod.out_channels, mod.kernel_size, stride=mod.stride,
                     padding=mod.padding, dilation=mod.dilation, bias=mod.bias is not None,
                     padding_mode=mod.padding_mode, **kw)


@torch.no_grad()
def _apply(model: nn.Module, g: _Group, keep: torch.Tensor) -> None:
    consumer = model.get_submodule(g.consumer)
    n = _out_dim(model.get_submodule(g.producers[0]))
    drop = torch.ones(n, dtype=torch.bool)
    drop[keep] = False
    prod0 = model.get_submodule(g.producers[0])
    if not g.gated and isinstance(consumer, nn.Linear) and prod0.bias is not None and consumer.bias is not None:
        zero_rows = (prod0.weight.reshape(n, -1) == 0).all(1) & drop
        if zero_rows.any():  # fold the constant activations of removed zero-row units into the bias
            f_b = _activation(model, g, prod0.bias) * zero_rows
            consumer.bias += consumer.weight.reshape(consumer.weight.shape[0], n, g.spatial).mul(
                f_b[None, :, None].to(consumer.weight.dtype)).sum((1, 2))
    for name in g.producers:
        _set_module(model, name, _slice_out(model.get_submodule(name), keep))
    _set_module(model, g.consumer, _slice_in(consumer, keep, g.spatial))


def prune_structured_(model: nn.Module, *, amount: float | None = None,
                      config: PQIPruneConfig | None = None) -> nn.Module:
    """Remove neurons/channels from `model`; returns the smaller model (see module docstring).

    amount: fraction of the units of each group to remove (0.0 removes only dead units, exactly).
    config: a PQIPruneConfig; each group keeps the SAP retain bound of its unit scores.
    """
    if (amount is None) == (config is None):
        raise ValueError("pass exactly one of amount= (a fraction in [0, 1)) or config=PQIPruneConfig(...)")
    if amount is not None and not 0 <= amount < 1:
        raise ValueError(f"amount is the fraction of neurons to remove and must lie in [0, 1), got {amount}")
    if config is not None and not isinstance(config, PQIPruneConfig):
        raise TypeError(f"config must be a PQIPruneConfig, got {type(config).__name__}")
    groups = _groups(model)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no structurally prunable layer pairs (Linear/Conv followed "
                         "by Linear/Conv in an nn.Sequential, or a gated MLP); use prune_() for unstructured pruning")
    gated = [_rank(model, g) for g in groups if g.gated]
    width = max((_keep_count(r, n, amount, config) for r, n in gated), default=0)
    for g in groups:  # gated MLPs: one intermediate width for every layer (the widest plan)
        ranked, n_live = _rank(model, g)
        _apply(model, g, _top(ranked, width if g.gated else _keep_count(ranked, n_live, amount, config)))
    return _finish(model, width)


def _finish(model: nn.Module, gated_width: int) -> nn.Module:
    if gated_width:
        for mod in model.modules():
            if hasattr(mod, "intermediate_size") and hasattr(mod, "down_proj"):
                mod.intermediate_size = gated_width
        if hasattr(getattr(model, "config", None), "intermediate_size"):
            model.config.intermediate_size = gated_width
    if isinstance(model, MLP):
        model.spec["hidden"] = [m.out_features for m in list(model.layers)[:-1] if isinstance(m, nn.Linear)]
    elif isinstance(model, MnistCNN):
        model.spec["channels"] = [model.features[0].out_channels, model.features[3].out_channels]
        model.spec["hidden"] = model.classifier[0].out_features
    else:
        return model
    rebuilt = build_model(model.spec).to(next(model.parameters()).device)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt
