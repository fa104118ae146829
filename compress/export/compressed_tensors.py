"""compressed-tensors `pack-quantized` checkpoints from our own integer weights (what llm-compressor writes).

A model quantized by compress.quantize.calibrated holds `QuantLinear` layers whose buffers already carry
the format's names and packing (`weight_packed` int32, `weight_scale` float16, `weight_zero_point`
packed along the output dim for asymmetric schemes, `weight_shape`). This module writes the
`quantization_config` that tells transformers (with the `compressed-tensors` package) and vLLM how to
read them: one config group per (bits, group size, symmetry), `ignore` naming every float nn.Linear.

    save_export(model, tokenizer, "out/gptq-w4")     # save_pretrained + tokenizer
    AutoModelForCausalLM.from_pretrained("out/gptq-w4")   # no shrinkwrap needed
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

FORMAT = "pack-quantized"


def _scheme(layer) -> tuple[int, int, bool]:
    return (layer.bits, layer.group_size, layer.sym)


def quantization_config(model: nn.Module) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` (config.json) describing `model`'s QuantLinear layers."""
    from compress.quantize.calibrated import QuantLinear

    quantized = {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear)}
    if not quantized:
        raise ValueError(f"{type(model).__name__} has no QuantLinear layers; quantize it with the gptq technique first")
    schemes = sorted({_scheme(m) for m in quantized.values()})
    groups = {}
    for i, (bits, group_size, sym) in enumerate(schemes):
        names = [n for n, m in quantized.items() if _scheme(m) == (bits, group_size, sym)]
        groups[f"group_{i}"] = {
            "targets": ["Linear"] if len(schemes) == 1 else names,
            "weights": {"num_bits": bits, "type": "int", "symmetric": sym, "strategy": "group",
                        "group_size": group_size, "dynamic": False, "actorder": None, "observer": "minmax",
                        "observer_kwargs": {}, "block_structure": None},
            "input_activations": None, "output_activations": None, "format": FORMAT}
    ignore = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    if "lm_head" not in ignore and getattr(model, "lm_head", None) is not None:
        ignore.append("lm_head")
    config = {"quant_method": "compressed-tensors", "format": FORMAT, "quantization_status": "compressed",
              "config_groups": groups, "ignore": ignore, "kv_cache_scheme": None, "sparsity_config": {},
              "global_compression_ratio": None}
    if not all(sym for _, _, sym in schemes):
        # compressed-tensors 0.20.1 builds the compressed model on the meta device without packing the zero
        # point ((out, groups) instead of (out / 8, groups)), so transformers refuses asymmetric checkpoints
        # on the compressed path; dequantize=True takes its load-time dequantization path, which unpacks them.
        config["dequantize"] = True
    return config


def save_export(model: nn.Module, tokenizer, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                **kwargs):
    """Export a gptq-quantized transformers model with compress.export.export_model (manifest, card,
    atomic write); config.json carries the compressed-tensors quantization_config. Returns ExportResult."""
    from compress.export.api import export_model

    model.config.quantization_config = quantization_config(model)
    return export_model(model, Path(path), metadata=metadata, tokenizer=tokenizer, **kwargs)
