"""The technique registry: `QUANTIZERS` and `PRUNERS`, name -> bundle. Nothing else lives here.

A technique is one module (compress/quantize/<name>.py, compress/prune/<name>.py) that builds a bundle
and calls `register_quantizer(...)` / `register_pruner(...)` at import. Everything that export,
evaluation, loading and the recipe need to know about a technique sits in its bundle, so no code
outside the technique's own module branches on a technique name:

- the recipe's variant union is built from `QUANTIZERS[name].config` (typed, unknown fields refused);
- export asks `describe_layer` which modules are quantized and stores what `save_layer` returns;
- loading asks `rebuild_layer` (or `dequantize_layer` where the technique's library is absent);
- size accounting asks `size`;
- a causal LM is loaded quantized through `hf_quantization_config` where transformers knows the
  technique, else it is loaded in float and `apply` runs on it;
- `needs_calibration` makes the quantize stage hand `apply` calibration data.

    from compress.techniques import QUANTIZERS, quantizer
    technique = quantizer("nf4")
    model = technique.apply(model, technique.config(), None)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from compress.config import CompressConfig


@dataclasses.dataclass(frozen=True)
class SizeReport:
    """What a model costs to store. `params` counts logical parameters (a packed 4-bit layer of shape
    (576, 1536) counts 884,736, not the 442,368 bytes it packs into); `bytes` is every stored tensor,
    scales and quantization state included; `nonzero` counts parameters that are not exactly zero."""

    params: int
    bytes: int
    nonzero: int

    def metrics(self) -> dict[str, float]:
        retained = self.nonzero / self.params if self.params else 1.0
        return {"params": float(self.params), "weight_bytes": float(self.bytes),
                "nonzero_params": float(self.nonzero), "retained_fraction": retained}


@dataclasses.dataclass(frozen=True)
class QuantTechnique:
    """One quantization technique.

    apply(model, config, calibration) -> model: quantizes in place (calibration is None unless
        `needs_calibration`; then it is a list of input batches the task provides).
    describe_layer(module) -> dict | None: the JSON-able settings of a layer this technique quantized
        (stored in the export's quantization.json), None for any other module.
    rebuild_layer(tensors, info) -> nn.Module: the quantized layer from its stored tensors (names
        relative to the layer, e.g. "weight", "SCB").
    dequantize_layer(tensors, info) -> dict[str, Tensor]: plain float tensors ("weight", "bias") for
        loading where the technique's runtime is unavailable; None if it cannot.
    size(model) -> SizeReport.
    hf_quantization_config(config) -> a transformers quantization config, or None where transformers
        cannot load the technique itself.
    """

    name: str
    config: type[CompressConfig] | None
    apply: Callable[[nn.Module, Any, Any], nn.Module]
    size: Callable[[nn.Module], SizeReport]
    describe_layer: Callable[[nn.Module], dict[str, Any] | None] = lambda module: None
    rebuild_layer: Callable[[dict[str, torch.Tensor], dict[str, Any]], nn.Module] | None = None
    dequantize_layer: Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, torch.Tensor]] | None = None
    hf_quantization_config: Callable[[Any], Any] | None = None
    needs_calibration: bool = False
    module: str = ""          # the module that registered it
    sources: tuple[str, ...] = ()  # further modules it runs; with `module`, the variant stages' cache key
    description: str = ""

    def code_sources(self) -> tuple[str, ...]:
        return (self.module, *self.sources)

    def make_config(self, options: Mapping[str, Any] | None = None) -> CompressConfig | None:
        """The technique's config from recipe options; the config's own __post_init__ validates them."""
        if self.config is None:
            if options:
                raise ValueError(f"technique {self.name!r} takes no options, got {dict(options)}")
            return None
        return self.config(**dict(options or {}))


@dataclasses.dataclass(frozen=True)
class PruneTechnique:
    """One pruning technique. apply(model, config, masks) -> report (with `.masks` and
    `.retained_fraction`); `structured` techniques change the architecture instead of masking."""

    name: str
    config: type[CompressConfig]
    apply: Callable[..., Any]
    structured: bool = False
    module: str = ""
    description: str = ""


QUANTIZERS: dict[str, QuantTechnique] = {}
PRUNERS: dict[str, PruneTechnique] = {}

# The modules that register the built-in techniques; importing them fills the tables. A new technique
# module adds itself here (one line), so `quantizer(name)` finds it without the caller importing it.
QUANT_MODULES = ("compress.quantize.none", "compress.quantize.bnb", "compress.quantize.dynamic_int8",
                 "compress.quantize.calibrated")
PRUNE_MODULES = ("compress.prune.api", "compress.prune.structured_llm")


def register_quantizer(technique: QuantTechnique) -> QuantTechnique:
    if technique.name in QUANTIZERS and QUANTIZERS[technique.name] is not technique:
        existing = QUANTIZERS[technique.name].module
        if existing != technique.module:
            raise ValueError(f"quantization technique {technique.name!r} is already registered by {existing}")
    QUANTIZERS[technique.name] = technique
    return technique


def register_pruner(technique: PruneTechnique) -> PruneTechnique:
    if technique.name in PRUNERS and PRUNERS[technique.name].module != technique.module:
        raise ValueError(f"pruning technique {technique.name!r} is already registered by "
                         f"{PRUNERS[technique.name].module}")
    PRUNERS[technique.name] = technique
    return technique


def load_all() -> None:
    """Import every technique module so both tables are complete."""
    for name in (*QUANT_MODULES, *PRUNE_MODULES):
        importlib.import_module(name)


def quantizer(name: str) -> QuantTechnique:
    load_all()
    try:
        return QUANTIZERS[name]
    except KeyError:
        raise KeyError(f"unknown quantization technique {name!r}; registered: {sorted(QUANTIZERS)}") from None


def pruner(name: str) -> PruneTechnique:
    load_all()
    try:
        return PRUNERS[name]
    except KeyError:
        raise KeyError(f"unknown pruning technique {name!r}; registered: {sorted(PRUNERS)}") from None


def layer_technique(module: nn.Module) -> tuple[QuantTechnique, dict[str, Any]] | None:
    """The technique that quantized `module` and its layer settings, or None for a float module."""
    load_all()
    for technique in QUANTIZERS.values():
        info = technique.describe_layer(module)
        if info is not None:
            return technique, {"kind": technique.name, **info}
    return None


def quantized_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """{dotted name: {"kind": technique name, ...settings}} for every quantized layer of `model`."""
    out = {}
    for name, module in model.named_modules():
        found = layer_technique(module)
        if found is not None:
            out[name] = found[1]
    return out
