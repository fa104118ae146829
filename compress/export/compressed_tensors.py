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


def save_export(model: nn.Module, tokenizer, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                **kwargs):
    """Export a gptq-quantized transformers model with compress.export.export_model (manifest, card,
    atomic write); config.json carries the compressed-tensors quantization_config. Returns ExportResult."""
    from compress.export.api import export_model
    from compress.quantize.calibrated import quantization_config

    model.config.quantization_config = quantization_config(model)
    return export_model(model, Path(path), metadata=metadata, tokenizer=tokenizer, **kwargs)
