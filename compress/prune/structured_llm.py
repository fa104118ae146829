"""Structured pruning of Llama-family causal LMs: physically remove MLP channels, attention heads (GQA-aware)
and, optionally, whole decoder layers, giving a smaller dense model that `save_pretrained` writes and
`AutoModelForCausalLM.from_pretrained` loads without us.

Why: unstructured masks keep every tensor shape, so neither bytes nor CPU latency shrink. Minitron (Muralidharan
et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation", arXiv 2407.14679) prunes width
by activation importance computed on a small calibration set and recovers quality by distilling from the
unpruned model; this module does the pruning half (compress/llm/student.py: `pruned_student` + `distill_lm`
do the recovery).

Importance (higher = keep):
- "activation": MLP channel j scores ||a_j||_2 * ||W_down[:, j]||_2, a_j the channel's activation
  (act(gate) * up) over all calibration tokens: exactly the Frobenius norm of the channel's contribution to the
  residual stream. Head h scores the norm of its o_proj contribution, ||A_h W_o,h^T||_F. A layer scores its
  block influence 1 - cos(h_in, h_out) (ShortGPT, Men et al. 2024), used only for `drop_layers`.
- "magnitude": ||W_gate,j|| * ||W_up,j|| * ||W_down[:, j]|| per channel, ||W_q,h|| * ||W_o,h|| per head
  (no calibration needed; cannot drop layers).

How many go: `target` is the fraction of non-embedding parameters removed. Layers (`drop_layers`) and heads
(`num_attention_heads`, `num_key_value_heads`: counts to keep) are removed first; MLP channels make up the
rest. `ratio="uniform"` removes as many channels from every layer; `ratio="pqi"` splits them over layers in
proportion to the SAP prune fraction 1 - r/d of each layer's channel-importance vector (PQ Index, Diao et al.
ICLR 2023, compress/prune/pq_index.py): layers whose importance is concentrated in few channels lose more.
LlamaConfig holds one `intermediate_size` for every layer, so with "pqi" narrower layers are padded back with
exact zero channels (outputs unchanged, gradients stay zero) up to the widest layer: the per-layer split changes
quality, not bytes or speed; `report.effective_params` counts the live channels only. Heads are uniform too.
On SmolLM2-135M "uniform" wins clearly: SAP reads layers with a few massive-activation channels as sparse and
strips them (bench/results/llm_prune.md).

GQA: query head i reads KV group i // (heads / kv_heads). Keeping `num_key_value_heads` < kv removes whole
groups (with their query heads) by summed importance; keeping fewer query heads removes the same number from
every group, the least important within each, so the grouping survives.

    report = structured_llm_prune_(model, StructuredLLMPruneConfig(target=0.25), calibration=[ids, ...])
    model.save_pretrained(folder)       # loads with AutoModelForCausalLM.from_pretrained(folder)

Recipe options (technique "structured-llm"): {target: 0.25, importance: activation, ratio: uniform,
num_attention_heads: null, num_key_value_heads: null, drop_layers: 0}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from compress.config import CompressConfig
from compress.models import eval_mode
from compress.prune.pq_index import pq_index, prune_ratio

SUPPORTED = ("llama", "mistral", "qwen2")  # gate/up/down MLP + q/k/v/o attention with GQA, no qk-norm


@dataclasses.dataclass
class StructuredLLMPruneConfig(CompressConfig):
    target: float = 0.25  # fraction of non-embedding parameters to remove
    importance: Literal["activation", "magnitude"] = "activation"
    ratio: Literal["uniform", "pqi"] = "uniform"
    num_attention_heads: int | None = None   # query heads to keep per layer (None: all)
    num_key_value_heads: int | None = None   # KV heads to keep per layer (None: all)
    drop_layers: int = 0                     # whole layers to remove, lowest block influence first
    p: float = 0.5                           # PQ Index pair for ratio="pqi" (the paper's default)
    q: float = 1.0

    def __post_init__(self):
        if not 0 <= self.target < 1:
            raise ValueError(f"target is the fraction of non-embedding parameters to remove and must lie in "
                             f"[0, 1), got {self.target}; use e.g. 0.25")
        if self.importance not in ("activation", "magnitude"):
            raise ValueError(f"importance must be 'activation' or 'magnitude', got {self.importance!r}")
        if self.ratio not in ("uniform", "pqi"):
            raise ValueError(f"ratio must be 'uniform' or 'pqi', got {self.ratio!r}")
        for name in ("num_attention_heads", "num_key_value_heads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} is a head count to keep (>= 1) or None for all, got {value!r}")
        if self.drop_layers < 0:
            raise ValueError(f"drop_layers must be >= 0, got {self.drop_layers}")
        if self.drop_layers and self.importance != "activation":
            raise ValueError("drop_layers ranks layers by block influence, which needs importance='activation' "
                             "and calibration data")
        if not 0 < self.p < self.q:
            raise ValueError(f"PQ Index needs 0 < p < q, got p={self.p}, q={self.q}; use p=0.5, q=1.0")


@dataclasses.dataclass
class StructuredLLMReport:
    config: dict[str, Any]
    params_before: int                 # non-embedding parameters
    params_after: int                  # non-embedding parameters as stored (padding included)
    effective_params: int              # non-embedding parameters in live channels (= params_after unless pqi)
    intermediate_sizes: list[int]      # live MLP channels per kept layer
    kept_layers: list[int]
    heads: tuple[int, int]             # (query heads, KV heads) per layer after pruning
    model: nn.Module = dataclasses.field(repr=False)
    masks: None = None                 # structured: nothing to mask, the shapes changed

    @property
    def retained_fraction(self) -> float:
        return self.effective_params / self.params_before

    @property
    def metrics(self) -> dict[str, float]:
        return {"retained_fraction": self.retained_fraction, "params_before": float(self.params_before),
                "params_after": float(self.params_after), "effective_params": float(self.effective_params),
                "layers": float(len(self.kept_layers)), "heads": float(self.heads[0]),
                "kv_heads": float(self.heads[1]),
                "intermediate_size": float(max(self.intermediate_sizes, default=0))}


def non_embedding_params(model: nn.Module) -> int:
    """Parameters outside the input embedding and the LM head (counted once when tied)."""
    skip = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        skip.add(id(head.weight))
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def _layers(model: nn.Module) -> nn.ModuleList:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    layers = getattr(getattr(model, "model", None), "layers", None)
    if kind not in SUPPORTED or layers is None:
        raise ValueError(f"structured-llm prunes {SUPPORTED} causal LMs (model.model.layers with gate/up/down "
                         f"MLPs and q/k/v/o attention); got model_type {kind!r} ({type(model).__name__}). "
                         "Use the unstructured 'sap' or 'magnitude' pruners for other models")
    return layers


def _shape(model) -> tuple[int, int, int]:
    c = model.config
    heads, kv = c.num_attention_heads, c.num_key_value_heads or c.num_attention_heads
    return heads, kv, getattr(c, "head_dim", None) or c.hidden_size // heads


def _as_batches(calibration) -> list[torch.Tensor]:
    if calibration is None or isinstance(calibration, torch.Tensor) or not len(calibration):
        raise ValueError("importance='activation' needs calibration: a non-empty list of input-id tensors "
                         "((T,) or (B, T)); pass some or use importance='magnitude'")
    batches = []
    for item in calibration:
        if not isinstance(item, torch.Tensor) or item.dtype not in (torch.long, torch.int) or item.ndim not in (1, 2):
            raise ValueError(f"each calibration item must be an integer tensor of input ids shaped (T,) or "
                             f"(B, T), got {type(item).__name__} {getattr(item, 'shape', '')}")
        batches.append(item.long().reshape(-1, item.shape[-1]))
    return batches


@torch.no_grad()
def activation_importance(model: nn.Module, calibration) -> dict[str, list[torch.Tensor]]:
    """Per layer: "mlp" (I,) channel scores, "heads" (H,) head scores, "layer" () block influence."""
    layers = _layers(model)
    _, _, head_dim = _shape(model)
    mlp_sq = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    head_sq = [torch.zeros(layer.self_attn.o_proj.in_features // head_dim, dtype=torch.float64) for layer in layers]
    influence = [torch.zeros((), dtype=torch.float64) for _ in layers]
    tokens = [0]

    def on_down(i):
        def hook(module, args):
            a = args[0].detach().reshape(-1, args[0].shape[-1]).double()              # (N, I)
            mlp_sq[i].add_(a.pow(2).sum(0).cpu())
        return hook

    def on_o(i):
        def hook(module, args):
            x = args[0].detach().reshape(-1, head_sq[i].numel(), head_dim).float()      # (N, H, d)
            w = module.weight.detach().float().reshape(module.out_features, -1, head_dim)  # (C, H, d)
            head_sq[i].add_(torch.einsum("nhd,chd->nhc", x, w).pow(2).sum((0, 2)).double().cpu())
        return hook

    def on_layer(i):
        def hook(module, args, kwargs, output):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            cos = nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)  # (B, T)
            influence[i].add_((1 - cos).sum().double().cpu())
        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(on_down(i)))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(on_o(i)))
        handles.append(layer.register_forward_hook(on_layer(i), with_kwargs=True))
    device = model.get_input_embeddings().weight.device
    try:
        with eval_mode(model):
            for ids in _as_batches(calibration):
                model(input_ids=ids.to(device), use_cache=False)
                tokens[0] += ids.numel()
    finally:
        for handle in handles:
            handle.remove()
    down_norm = [layer.mlp.down_proj.weight.detach().double().norm(dim=0).cpu() for layer in layers]
    return {"mlp": [s.sqrt() * n for s, n in zip(mlp_sq, down_norm, strict=True)],
            "heads": [s.sqrt() for s in head_sq], "layer": [b / tokens[0] for b in influence]}


@torch.no_grad()
def magnitude_importance(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    """Per layer: "mlp" (I,) = ||gate_j|| ||up_j|| ||down_:,j||, "heads" (H,) = ||W_q,h|| ||W_o,h||."""
    _, _, head_dim = _shape(model)
    mlp, heads = [], []
    for layer in _layers(model):
        m, a = layer.mlp, layer.self_attn
        norm = (lambda w, dim: w.detach().double().norm(dim=dim).cpu())  # noqa: E731
        mlp.append(norm(m.gate_proj.weight, 1) * norm(m.up_proj.weight, 1) * norm(m.down_proj.weight, 0))
        q = a.q_proj.weight.detach().double().reshape(-1, head_dim * a.q_proj.in_features).norm(dim=1)
        o = a.o_proj.weight.detach().double().reshape(a.o_proj.out_features, -1, head_dim).norm(dim=(0, 2))
        heads.append(q.cpu() * o.cpu())
    return {"mlp": mlp, "heads": heads, "layer": []}


def _head_plan(config: StructuredLLMPruneConfig, heads: int, kv: int) -> tuple[int, int]:
    """(query heads, KV heads) to keep, checked against the GQA grouping."""
    keep_kv = config.num_key_value_heads or kv
    group = heads // kv
    keep_heads = config.num_attention_heads or keep_kv * group
    if keep_kv > kv or keep_heads > heads:
        raise ValueError(f"cannot keep {keep_heads} query / {keep_kv} KV heads of a model with {heads} / {kv}")
    if keep_heads % keep_kv or keep_heads // keep_kv > group:
        raise ValueError(f"num_attention_heads={keep_heads} breaks GQA grouping: it must be a multiple of the "
                         f"{keep_kv} kept KV heads with at most {group} query heads per group (the model has "
                         f"{heads} heads in {kv} groups); use e.g. {keep_kv * max(1, group - 1)}")
    return keep_heads, keep_kv


def _select_heads(scores: torch.Tensor, heads: int, kv: int, keep_heads: int, keep_kv: int) -> tuple[list, list]:
    """Kept query-head and KV-group indices (ascending, group-major) for one layer."""
    group = heads // kv
    by_group = scores.reshape(kv, group)                                         # (kv, group)
    groups = sorted(by_group.sum(1).topk(keep_kv).indices.tolist())
    per_group = keep_heads // keep_kv
    q = [g * group + int(j) for g in groups for j in sorted(by_group[g].topk(per_group).indices.tolist())]
    return q, groups


def _channel_counts(scores: list[torch.Tensor], remove: int, config: StructuredLLMPruneConfig) -> list[int]:
    """Channels to keep per layer so that `remove` channels go in total (uniform or PQI-weighted)."""
    width, n = scores[0].numel(), len(scores)
    if remove >= width * n or (config.ratio == "uniform" and round(remove / n) >= width):
        raise ValueError(f"target={config.target} would remove every MLP channel of a layer ({remove} of "
                         f"{width * n} channels over {n} layers); lower target or remove heads/layers instead")
    if config.ratio == "uniform":
        return [width - round(remove / n)] * n
    weight = torch.stack([prune_ratio(width, pq_index(s, config.p, config.q), config.p, config.q, beta=1.0)
                          for s in scores]).clamp_min(1e-6)                      # (L,)
    cut = torch.zeros(n, dtype=torch.long)
    left = remove
    while left > 0:  # water-filling: proportional shares, capped at width - 1 per layer
        room = (width - 1 - cut).clamp_min(0)
        if int(room.sum()) < left:
            raise ValueError(f"target={config.target} would remove every MLP channel of a layer under the PQI "
                             "split; lower target")
        share = weight * (room > 0)
        extra = torch.minimum(torch.floor(left * share / share.sum()).long(), room)
        if int(extra.sum()) == 0:
            extra[int(torch.argmax(share))] = 1
        cut += extra
        left -= int(extra.sum())
    return [width - int(c) for c in cut]


def _linear(old: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    w = old.weight.detach()
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None, device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if old.bias is not None:
        new.bias.data.copy_(old.bias.detach()[rows] if rows is not None else old.bias.detach())
    new.weight.requires_grad_(old.weight.requires_grad)
    return new


def _shrink_mlp(mlp: nn.Module, keep: torch.Tensor, width: int) -> None:
    """Keep channels `keep` (ascending), then pad with exact zero channels up to `width`."""
    mlp.gate_proj, mlp.up_proj = _linear(mlp.gate_proj, rows=keep), _linear(mlp.up_proj, rows=keep)
    mlp.down_proj = _linear(mlp.down_proj, cols=keep)
    pad = width - keep.numel()
    if pad > 0:
        for name, dim in (("gate_proj", 0), ("up_proj", 0), ("down_proj", 1)):
            old = getattr(mlp, name)
            w = torch.cat([old.weight.data, old.weight.data.new_zeros(
                (pad, old.in_features) if dim == 0 else (old.out_features, pad))], dim=dim)
            new = nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None, device=w.device, dtype=w.dtype)
            new.weight.data.copy_(w)
            if old.bias is not None:
                new.bias.data.copy_(torch.cat([old.bias.data, old.bias.data.new_zeros(pad)]) if dim == 0
                                    else old.bias.data)
            setattr(mlp, name, new)
    mlp.intermediate_size = width


def _shrink_attention(attn: nn.Module, q_heads: list[int], groups: list[int], head_dim: int) -> None:
    def rows(heads):
        return torch.tensor([h * head_dim + k for h in heads for k in range(head_dim)], dtype=torch.long)

    q_idx, kv_idx = rows(q_heads), rows(groups)
    attn.q_proj = _linear(attn.q_proj, rows=q_idx)
    attn.k_proj, attn.v_proj = _linear(attn.k_proj, rows=kv_idx), _linear(attn.v_proj, rows=kv_idx)
    attn.o_proj = _linear(attn.o_proj, cols=q_idx)
    attn.num_key_value_groups = len(q_heads) // len(groups)
    for name, value in (("num_heads", len(q_heads)), ("num_key_value_heads", len(groups))):
        if hasattr(attn, name):
            setattr(attn, name, value)


def _layer_params(layer: nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


@torch.no_grad()
def structured_llm_prune_(model: nn.Module, config: StructuredLLMPruneConfig, calibration=None, *,
                          scores: dict[str, list[torch.Tensor]] | None = None) -> StructuredLLMReport:
    """Prune `model` in place (layers, heads, MLP channels) to about `config.target` fewer non-embedding
    parameters; `calibration` (list of input-id tensors) is needed for importance='activation'.
    `scores`: importance already computed on this same (unpruned) model by `activation_importance` /
    `magnitude_importance`, to prune several copies without recomputing it."""
    layers = _layers(model)
    heads, kv, head_dim = _shape(model)
    keep_heads, keep_kv = _head_plan(config, heads, kv)
    if config.drop_layers >= len(layers):
        raise ValueError(f"drop_layers={config.drop_layers} would remove every one of the {len(layers)} layers")
    if scores is None:
        scores = (activation_importance(model, calibration) if config.importance == "activation"
                  else magnitude_importance(model))
    if len(scores["mlp"]) != len(layers) or (config.drop_layers and len(scores["layer"]) != len(layers)):
        raise ValueError(f"scores cover {len(scores['mlp'])} layers, the model has {len(layers)}; compute them "
                         "on this model before pruning it")
    before = non_embedding_params(model)
    kept = sorted(torch.stack(scores["layer"]).topk(len(layers) - config.drop_layers).indices.tolist()) \
        if config.drop_layers else list(range(len(layers)))
    hidden = model.config.hidden_size
    attn_cut = hidden * head_dim * ((heads - keep_heads) * 2 + (kv - keep_kv) * 2)
    per_channel = 3 * hidden + (2 if getattr(model.config, "mlp_bias", False) else 0)
    dropped = sum(_layer_params(layers[i]) for i in range(len(layers)) if i not in kept)
    left = config.target * before - dropped - attn_cut * len(kept)
    if left < -0.005 * before:
        raise ValueError(f"drop_layers={config.drop_layers} and {keep_heads}/{keep_kv} heads already remove "
                         f"{(before * config.target - left) / before:.1%} of non-embedding parameters, more "
                         f"than target={config.target}; raise target or keep more heads/layers")
    widths = _channel_counts([scores["mlp"][i] for i in kept], max(0, round(left / per_channel)), config)
    width = max(widths)
    for i, w in zip(kept, widths, strict=True):
        layer = layers[i]
        keep = torch.sort(scores["mlp"][i].topk(w).indices).values.to(layer.mlp.gate_proj.weight.device)
        _shrink_mlp(layer.mlp, keep, width)
        if (keep_heads, keep_kv) != (heads, kv):
            _shrink_attention(layer.self_attn, *_select_heads(scores["heads"][i], heads, kv, keep_heads, keep_kv),
                              head_dim)
    model.model.layers = nn.ModuleList([layers[i] for i in kept])
    for new_index, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_index
    _update_config(model.config, len(kept), width, keep_heads, keep_kv, head_dim)
    after = non_embedding_params(model)
    padding = sum((width - w) * per_channel for w in widths)
    return StructuredLLMReport(config=config.to_dict(), params_before=before, params_after=after,
                               effective_params=after - padding, intermediate_sizes=widths, kept_layers=kept,
                               heads=(keep_heads, keep_kv), model=model)


def _update_config(c, layers: int, width: int, heads: int, kv: int, head_dim: int) -> None:
    if getattr(c, "layer_types", None) is not None:
        c.layer_types = list(c.layer_types)[:layers]
    c.num_hidden_layers, c.intermediate_size = layers, width
    c.num_attention_heads, c.num_key_value_heads, c.head_dim = heads, kv, head_dim


def _register() -> None:
    from compress.techniques import PruneTechnique, register_pruner

    register_pruner(PruneTechnique(
        name="structured-llm", config=StructuredLLMPruneConfig, apply=structured_llm_prune_, structured=True,
        module=__name__, description="Minitron-style width/depth pruning of Llama-family LMs: MLP channels, "
                                     "GQA-aware heads, layers by activation or magnitude importance"))


_register()
