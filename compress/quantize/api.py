"""`quantize_(model, Int8Config() | NF4Config() | FP4Config())`: weight quantization with bitsandbytes.

Why: int8 cuts linear-layer weight bytes ~4x and 4-bit ~7-8x at a small quality cost, so a distilled
or pruned student ships smaller. Two paths share one set of configs:

- plain torch models (the MNIST students): `quantize_` swaps `nn.Linear` for `bnb.nn.Linear8bitLt`
  (LLM.int8, Dettmers et al. 2022, https://arxiv.org/abs/2208.07339) or `bnb.nn.Linear4bit`
  (NF4/FP4 from QLoRA, Dettmers et al. 2023, https://arxiv.org/abs/2305.14314), in place;
- HF causal LMs: `load_quantized_hf(source, config)` loads through transformers' `BitsAndBytesConfig`
  (`to_bnb_config`), so `save_pretrained` / `from_pretrained` keep working.

A registry maps each config type to its handler (no if-chains); `register_quantizer` adds one.

Sample recipe stage (YAML):

    quantize:
      type: NF4Config
      double_quant: true
      compute_dtype: bfloat16
      skip_modules: [lm_head]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from compress.config import CompressConfig

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def _check_skip(skip_modules: Any) -> tuple[str, ...]:
    if isinstance(skip_modules, str) or not all(isinstance(s, str) and s for s in skip_modules):
        raise ValueError(f"skip_modules must be a list of module names (e.g. ['lm_head', 'layers.0']), "
                         f"got {skip_modules!r}")
    return tuple(skip_modules)


@dataclasses.dataclass
class Int8Config(CompressConfig):
    """LLM.int8: int8 weights with per-row absmax scales; activation columns with any |x| > threshold
    run in 16-bit (outlier decomposition). threshold=6.0 is the paper's default; 0 disables it."""

    threshold: float = 6.0
    skip_modules: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.threshold, int | float) or self.threshold < 0:
            raise ValueError(f"Int8Config.threshold must be a number >= 0 (6.0 = LLM.int8 default, 0 = no "
                             f"outlier decomposition), got {self.threshold!r}")
        self.threshold = float(self.threshold)
        self.skip_modules = _check_skip(self.skip_modules)


@dataclasses.dataclass
class _FourBitConfig(CompressConfig):
    """4-bit blockwise weights (block of 64, one absmax per block). double_quant also quantizes the
    absmax values to 8 bit (QLoRA "double quantization", ~0.37 bit/param saved); compute_dtype is the
    dtype the dequantized weight is multiplied in."""

    quant_type: ClassVar[str] = ""
    double_quant: bool = False
    compute_dtype: str = "float32"
    skip_modules: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.double_quant, bool):
            raise ValueError(f"{type(self).__name__}.double_quant must be true or false, got {self.double_quant!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"{type(self).__name__}.compute_dtype must be one of {list(COMPUTE_DTYPES)}, "
                             f"got {self.compute_dtype!r}")
        self.skip_modules = _check_skip(self.skip_modules)


@dataclasses.dataclass
class NF4Config(_FourBitConfig):
    """4-bit NormalFloat: 16 levels at quantiles of N(0, 1), information-optimal for normal weights."""

    quant_type: ClassVar[str] = "nf4"


@dataclasses.dataclass
class FP4Config(_FourBitConfig):
    """4-bit float (1 sign, 2 exponent, 1 mantissa bit)."""

    quant_type: ClassVar[str] = "fp4"


QuantConfig = Int8Config | NF4Config | FP4Config
Quantizer = Callable[[nn.Module, Any], nn.Module]
QUANTIZERS: dict[type[CompressConfig], Quantizer] = {}


def register_quantizer(config_type: type[CompressConfig]) -> Callable[[Quantizer], Quantizer]:
    """Decorator: make `quantize_(model, config_type(...))` call the decorated handler."""
    def wrap(handler: Quantizer) -> Quantizer:
        QUANTIZERS[config_type] = handler
        return handler
    return wrap


def _is_hf(model: nn.Module) -> bool:
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)


def quantize_(model: nn.Module, config: CompressConfig) -> nn.Module:
    """Quantize `model`'s linear layers in place as `config` says; returns `model`.

    HF transformers models are refused: load them quantized with `load_quantized_hf` so that the
    model's `quantization_config` (what `from_pretrained` needs to reload an export) is set.
    """
    handler = QUANTIZERS.get(type(config))
    if handler is None:
        raise TypeError(f"no quantizer for {type(config).__name__}; expected one of "
                        f"{sorted(t.__name__ for t in QUANTIZERS)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_ needs an nn.Module, got {type(model).__name__}")
    if _is_hf(model):
        raise TypeError(f"{type(model).__name__} is a transformers model; quantize it on load with "
                        "compress.quantize.load_quantized_hf(source, config) so save_pretrained/from_pretrained "
                        "round-trip")
    return handler(model, config)


def load_quantized_hf(source: str, config: CompressConfig, *, dtype: str = "float32",
                      device_map: str | dict | None = None, trust_remote_code: bool = False):
    """Load an HF causal LM (`compress.llm.teacher.load_causal_lm` source: "smollm2", a folder or a hub
    id) quantized by bitsandbytes as `config` says; returns `(model, tokenizer)` in eval mode.

    device_map defaults to the first CUDA device when there is one, else "cpu" (bitsandbytes >= 0.45
    runs int8 and 4-bit layers on CPU). 4-bit layers get the CPU bf16 repacking switched off so an
    export after inference stores exactly the quantized weights."""
    import torch

    from compress.llm.teacher import load_causal_lm
    from compress.quantize.bnb import disable_cpu_repacking, to_bnb_config

    bnb_config = to_bnb_config(config)
    if device_map is None:
        device_map = {"": 0} if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_causal_lm(source, dtype=dtype, device_map=device_map,
                                      trust_remote_code=trust_remote_code, quantization_config=bnb_config)
    disable_cpu_repacking(model)  # keeps stored 4-bit tensors exact for export (see compress.quantize.bnb)
    return model, tokenizer
