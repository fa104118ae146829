"""Pruning masks: which weights are prunable, applying masks, and keeping pruned weights at zero.

A mask dict maps a parameter name (as in `model.named_parameters()`) to a bool tensor of the same
shape, True = weight survives. Prunable weights are the `weight` of Linear and Conv layers (and
Hugging Face's GPT-2 style `Conv1D`) with dim > 1; biases, norms and embeddings are never pruned
(Diao et al. 2023 prune every weight matrix/kernel). Tied parameters are counted once.

Training a pruned model: `fit(..., after_step=keep_masked(masks))` re-zeroes pruned weights after
every optimiser step, and `mask_gradients_(model, masks)` zeroes their gradients so Adam's moments
never accumulate for them (together: pruned weights are exactly 0 after any number of steps).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

import torch
from torch import nn

Masks = dict[str, torch.Tensor]


def _is_prunable_module(module: nn.Module) -> bool:
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        return True
    return type(module).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D (GPT-2): weight (in, out)


def prunable_weights(model: nn.Module, ignore: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """Name -> weight of every prunable layer, in module order.

    ignore: fnmatch patterns on module names (e.g. "lm_head", "*.embed_*") to leave dense.
    """
    patterns = list(ignore)
    seen: set[int] = set()
    out: dict[str, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        if not _is_prunable_module(module) or any(fnmatch.fnmatchcase(mod_name, pat) for pat in patterns):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() < 2 or not weight.is_floating_point():
            continue
        if id(weight) in seen:  # tied weights: prune once
            continue
        seen.add(id(weight))
        out[f"{mod_name}.weight" if mod_name else "weight"] = weight
    return out


def require_prunable(model: nn.Module, ignore: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """`prunable_weights`, raising ValueError when there is nothing to prune."""
    weights = prunable_weights(model, ignore)
    if not weights:
        raise ValueError(f"{type(model).__name__} has no prunable weights (Linear/Conv weights with dim > 1, "
                         f"ignore={list(ignore)}); pass a model with Linear or Conv layers or loosen `ignore`")
    return weights


def masks_from_weights(weights: dict[str, torch.Tensor]) -> Masks:
    """Masks that treat exactly-zero weights as already pruned (trained weights are never exactly 0)."""
    return {name: w.detach() != 0 for name, w in weights.items()}


def check_masks(weights: dict[str, torch.Tensor], masks: Masks) -> None:
    for name, w in weights.items():
        if name not in masks:
            raise ValueError(f"no mask for prunable weight {name!r}; masks has {sorted(masks)[:5]}...; pass the "
                             "masks returned by the previous prune_ call (report.masks)")
        if masks[name].shape != w.shape or masks[name].dtype != torch.bool:
            raise ValueError(f"mask for {name!r} is {masks[name].dtype} {tuple(masks[name].shape)}, expected "
                             f"torch.bool {tuple(w.shape)}")


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Masks) -> None:
    """Zero every masked-out weight of `model` in place."""
    for name, mask in masks.items():
        param = model.get_parameter(name)
        if mask.device != param.device:
            masks[name] = mask = mask.to(param.device)
        param.masked_fill_(~mask, 0.0)  # +0.0, not mul_'s -0.0, so sparse export sees all-zero bits


def keep_masked(masks: Masks) -> Callable[[nn.Module], None]:
    """An `after_step` hook for `compress.train.fit` that re-applies `masks` after each optimiser step."""
    def after_step(model: nn.Module) -> None:
        apply_masks_(model, masks)
    return after_step


def mask_gradients_(model: nn.Module, masks: Masks) -> list[torch.utils.hooks.RemovableHandle]:
    """Register gradient hooks that zero the gradients of pruned weights; remove the handles after training."""
    handles = []
    for name, mask in masks.items():
        param = model.get_parameter(name)
        m = mask.to(param.device)
        handles.append(param.register_hook(lambda grad, m=m: grad * m))
    return handles


def sparsity(model: nn.Module, ignore: Iterable[str] = ()) -> float:
    """Fraction of exactly-zero entries among the prunable weights of `model`."""
    weights = prunable_weights(model, ignore)
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return zeros / total if total else 0.0
