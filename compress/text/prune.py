"""Structured pruning of BERT-family encoders that physically shrinks them: FFN neurons and whole layers
are removed (smaller matrices, config updated), so the export is smaller and faster and still loads with
plain `AutoModelForSequenceClassification.from_pretrained`.

FFN neurons. Neuron j of layer l is row j of `intermediate.dense` and column j of `output.dense`.
Importance ("score"):
- "magnitude": ||W_in[j, :]||_2 * ||W_out[:, j]||_2, the size of the path through the neuron
  (a weight-magnitude proxy in the spirit of Michel et al. 2019 and the movement-pruning baselines);
- "pqi": ||w_j||_2 * (1 - PQI(w_j)) with w_j = concat(W_in[j, :], W_out[:, j]) and PQI the PQ Index
  (Diao et al., ICLR 2023, compress/prune/pq_index.py): the magnitude discounted by sparsity, so small
  neurons and neurons whose mass sits in a few weights go first (an all-zero neuron scores 0).
Amount ("ffn"): a fraction of neurons removed per layer, or "sap": the paper's SAP bound applied per layer
to the vector of neuron importances (keep a fraction 1 - PQI of them at p=0.5, q=1), averaged over layers.
BertConfig has one `intermediate_size`, so every layer keeps the same count (the per-layer ranking
still decides which neurons go).

Attention heads are not removed: transformers 5 dropped `prune_heads` / `config.pruned_heads`, and a
stock BertSelfAttention fixes head size = hidden/heads and attention width = hidden_size, so a BERT with
fewer heads per layer cannot be loaded by `from_pretrained` without custom code (trust_remote_code).
Whole layers can be removed instead (`drop_layers`), and `num_hidden_layers` follows.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from compress.prune.pq_index import pq_index, prune_ratio


@dataclasses.dataclass
class PruneResult:
    ffn_before: int
    ffn_after: int
    layers_before: int
    layers_after: int
    params_before: int
    params_after: int

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()} | {
            "retained_fraction": self.params_after / self.params_before}


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer layers of a BERT-family model (`<base>.encoder.layer`)."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not all(
            hasattr(layer, "intermediate") and hasattr(layer, "output") for layer in layers):
        raise TypeError(f"{type(model).__name__} is not a BERT-family encoder (base_model.encoder.layer[i] with "
                        "intermediate.dense / output.dense); structured pruning supports BERT, RoBERTa, "
                        "Electra, MiniLM and their kin")
    return layers


def neuron_scores(layer: nn.Module, score: str) -> torch.Tensor:
    """Importance of each FFN neuron of `layer`, shape (intermediate,)."""
    w_in = layer.intermediate.dense.weight.detach()   # (I, H)
    w_out = layer.output.dense.weight.detach()        # (H, I)
    if score == "magnitude":
        return w_in.norm(dim=1) * w_out.norm(dim=0)
    if score == "pqi":
        w = torch.cat([w_in, w_out.T], dim=1)  # (I, 2H)
        return w.norm(dim=1) * (1.0 - pq_index(w, dim=1).float())
    raise ValueError(f"prune.score must be 'magnitude' or 'pqi', got {score!r}")


def keep_count(scores: list[torch.Tensor], amount: float | str) -> int:
    """How many neurons each layer keeps: (1 - amount) of them, or the SAP bound averaged over layers."""
    width = scores[0].numel()
    if amount == "sap":
        ratio = sum(float(prune_ratio(width, pq_index(s.double()))) for s in scores) / len(scores)
    elif isinstance(amount, int | float) and 0 <= amount < 1:
        ratio = float(amount)
    else:
        raise ValueError(f"prune.ffn must be a fraction in [0, 1) or 'sap', got {amount!r}")
    return max(1, width - int(width * ratio + 1e-9))


def _sliced(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, keep).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    new.weight.data.copy_(weight)
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[keep])
    return new


def prune_ffn_(model: nn.Module, *, amount: float | str = 0.5, score: str = "magnitude") -> int:
    """Remove the least important FFN neurons of every layer in place; returns the new width."""
    layers = encoder_layers(model)
    scores = [neuron_scores(layer, score) for layer in layers]
    k = keep_count(scores, amount)
    for layer, s in zip(layers, scores, strict=True):
        keep = torch.sort(torch.topk(s, k).indices).values
        layer.intermediate.dense = _sliced(layer.intermediate.dense, keep, 0)
        layer.output.dense = _sliced(layer.output.dense, keep, 1)
    model.config.intermediate_size = k
    return k


def drop_layers_(model: nn.Module, drop: list[int]) -> int:
    """Remove the encoder layers at indices `drop` in place; returns the new layer count."""
    layers = encoder_layers(model)
    if any(not 0 <= i < len(layers) for i in drop) or len(set(drop)) >= len(layers):
        raise ValueError(f"prune.drop_layers must be distinct indices in [0, {len(layers)}) leaving at least one "
                         f"layer, got {drop}")
    kept = [layer for i, layer in enumerate(layers) if i not in set(drop)]
    model.base_model.encoder.layer = nn.ModuleList(kept)
    for i, layer in enumerate(kept):  # attention caches index layers by position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    model.config.num_hidden_layers = len(kept)
    return len(kept)


def prune_encoder_(model: nn.Module, *, ffn: float | str = 0.5, score: str = "magnitude",
                   drop_layers: list[int] | None = None) -> PruneResult:
    """Drop layers, then FFN neurons; returns the before/after sizes."""
    before = sum(p.numel() for p in model.parameters())
    ffn_before, layers_before = model.config.intermediate_size, model.config.num_hidden_layers
    if drop_layers:
        drop_layers_(model, list(drop_layers))
    prune_ffn_(model, amount=ffn, score=score)
    return PruneResult(ffn_before=ffn_before, ffn_after=model.config.intermediate_size,
                       layers_before=layers_before, layers_after=model.config.num_hidden_layers,
                       params_before=before, params_after=sum(p.numel() for p in model.parameters()))

