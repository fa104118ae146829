"""bitsandbytes layers: swap `nn.Linear` for `Linear8bitLt` / `Linear4bit`, rebuild them from stored
tensors, and translate our configs into transformers' `BitsAndBytesConfig`.

What bitsandbytes stores (0.50, same on CPU and CUDA):
- `Linear8bitLt(has_fp16_weights=False)`: `weight` int8 (out, in) plus `SCB` float32 (out,) row absmax,
  so W ~= weight * SCB[:, None] / 127; the state dict adds `weight_format` (0 = row-major).
- `Linear4bit`: `weight` uint8 ((out*in+1)//2, 1), two 4-bit codes per byte (high nibble first), plus
  `weight.absmax` (one per 64 values; uint8 when double-quantized with `weight.nested_absmax` /
  `weight.nested_quant_map`), `weight.quant_map` (the 16 code values) and
  `weight.quant_state.bitsandbytes__<nf4|fp4>` (JSON of blocksize, shape, dtype, nested offset).

CPU caveat: on AVX512-BF16 CPUs `Linear4bit.forward` repacks the weight into a bf16 CPU layout on the
first eval call, which asserts out_features % 32 == 0 (fails for a 10-class head) and rounds absmax to
bf16 so a later `state_dict()` no longer matches the quantized weights. We switch that repacking off
(`support_avx512bf16_for_cpu = False`) on every layer we create: forward then dequantizes and multiplies
in `compute_dtype`, and the stored tensors stay exactly what was quantized.

CPU bug worked around: bitsandbytes 0.50.2's CPU `dequantize_4bit` kernel indexes absmax per row, but
quantization uses blocks over the flattened weight, so layers with in_features % 64 != 0 (the MNIST
MLP's 784-wide input layer) dequantize to wrong weights on CPU (max error 2.6 vs 0.5 on N(0,1)). Our
layers are `Linear4bit` subclasses (`SafeLinear4bit`) that dequantize such layers in pure torch on CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from compress.config import CompressConfig
from compress.quantize.dequant import dequantize_4bit

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


_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _bnb():
    """bitsandbytes, imported on first use: it pulls in torch._dynamo and costs ~3 s of start-up, which a
    run without a bitsandbytes variant (and every CLI command) should not pay."""
    try:
        import bitsandbytes as bnb
    except ImportError as err:  # pragma: no cover - bitsandbytes is a project dependency
        raise ImportError("bitsandbytes is not installed; install it (pip install bitsandbytes) or load "
                          "exports with compress.quantize.dequant (pure torch)") from err
    return bnb


def _loaded_bnb():
    """bitsandbytes if something imported it already, else None: a module can only be a bitsandbytes
    layer once bitsandbytes is imported, so the describe hooks need not import it to answer no. A module
    another thread is still importing (variants run in parallel) counts as not imported: it has no `nn` yet."""
    bnb = sys.modules.get("bitsandbytes")
    if bnb is None or getattr(getattr(bnb, "__spec__", None), "_initializing", False):
        return None
    return bnb


@functools.cache
def _safe_linear4bit() -> type:
    bnb = _bnb()

    class SafeLinear4bit(bnb.nn.Linear4bit):
        """`bnb.nn.Linear4bit` with a correct CPU forward when in_features is not a multiple of the
        blocksize (see module docstring); identical to it otherwise."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            qs = self.weight.quant_state
            if x.device.type != "cpu" or qs is None or self.in_features % qs.blocksize == 0:
                return super().forward(x)
            d = qs.as_dict()
            w = dequantize_4bit(self.weight.data, absmax=d["absmax"], quant_map=d["quant_map"], state=d,
                                nested_absmax=d.get("nested_absmax"), nested_quant_map=d.get("nested_quant_map"))
            dtype = self.compute_dtype or x.dtype
            bias = None if self.bias is None else self.bias.to(dtype)
            return F.linear(x.to(dtype), w.to(dtype), bias).to(x.dtype)  # (..., out_features)

    SafeLinear4bit.__module__, SafeLinear4bit.__qualname__ = __name__, "SafeLinear4bit"  # pickles by name
    return SafeLinear4bit


def __getattr__(name: str):  # `compress.quantize.bnb.SafeLinear4bit` (what pickle looks up), built on demand
    if name == "SafeLinear4bit":
        return _safe_linear4bit()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_skipped(name: str, skip_modules: Iterable[str]) -> bool:
    """True when module `name` (dotted) matches a skip entry: the whole name, a dotted prefix of it, or
    one of its components (so "lm_head" skips "lm_head" and "model.lm_head")."""
    parts = name.split(".")
    return any(name == s or name.startswith(s + ".") or s in parts for s in skip_modules)


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module],
                    skip_modules: Iterable[str] = ()) -> list[str]:
    """Replace every plain `nn.Linear` (not already quantized, not skipped) by `make(linear)`; returns
    the dotted names replaced."""
    bnb = _bnb()
    skip = tuple(skip_modules)
    quantized = (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)
    targets = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and not isinstance(mod, quantized) and not is_skipped(name, skip)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(linear))
    return [name for name, _ in targets]


def _frozen(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone(), requires_grad=False)


def to_linear8bit(linear: nn.Linear, threshold: float) -> nn.Module:
    """An int8 `Linear8bitLt` holding `linear`'s weights, quantized on `linear`'s device."""
    bnb = _bnb()
    device = linear.weight.device
    layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                has_fp16_weights=False, threshold=threshold, device="meta")
    # Int8Params quantizes when moved off the CPU-resident float data (row-wise absmax, fp16 first).
    layer.weight = bnb.nn.Int8Params(linear.weight.detach().float().cpu(), requires_grad=False,
                                     has_fp16_weights=False).to(device)
    layer.bias = _frozen(linear.bias)
    return layer


def to_linear4bit(linear: nn.Linear, quant_type: str, double_quant: bool, compute_dtype: str) -> nn.Module:
    """A 4-bit `Linear4bit` (nf4 | fp4, block 64) holding `linear`'s weights."""
    bnb = _bnb()
    device = linear.weight.device
    layer = _safe_linear4bit()(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=_TORCH_DTYPES[compute_dtype], compress_statistics=double_quant,
                              quant_type=quant_type, device="meta")
    layer.weight = bnb.nn.Params4bit(linear.weight.detach().cpu(), requires_grad=False, quant_type=quant_type,
                                     compress_statistics=double_quant, module=layer).to(device)
    layer.bias = _frozen(linear.bias)
    layer.support_avx512bf16_for_cpu = False  # see module docstring
    return layer


def _quantize_int8(model: nn.Module, config: Int8Config, calibration: Any = None) -> nn.Module:
    names = replace_linears(model, lambda lin: to_linear8bit(lin, config.threshold), config.skip_modules)
    return _mark(model, config, names)


def _quantize_4bit(model: nn.Module, config: _FourBitConfig, calibration: Any = None) -> nn.Module:
    names = replace_linears(model, lambda lin: to_linear4bit(lin, config.quant_type, config.double_quant,
                                                             config.compute_dtype), config.skip_modules)
    return _mark(model, config, names)


def _mark(model: nn.Module, config, names: list[str]) -> nn.Module:
    if not names:
        raise ValueError(f"{type(config).__name__} found no nn.Linear to quantize in {type(model).__name__} "
                         f"(skip_modules={list(config.skip_modules)}); check the model or the skip list")
    model.quantization_config = config.to_dict()  # what export writes next to the weights
    return model


def _describe_int8(module: nn.Module) -> dict[str, Any] | None:
    bnb = _loaded_bnb()
    if bnb is None or not isinstance(module, bnb.nn.Linear8bitLt):
        return None
    return {"threshold": float(module.state.threshold)}


def _describe_4bit(quant_type: str) -> Callable[[nn.Module], dict[str, Any] | None]:
    def describe(module: nn.Module) -> dict[str, Any] | None:
        bnb = _loaded_bnb()
        if bnb is None or not isinstance(module, bnb.nn.Linear4bit):
            return None
        qs = module.weight.quant_state
        if qs.quant_type != quant_type:
            return None
        compute = str(module.compute_dtype).removeprefix("torch.") if module.compute_dtype else "float32"
        return {"double_quant": bool(qs.nested), "compute_dtype": compute}
    return describe


def quantization_info(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Quantized layers of `model`: {dotted name: {"kind": "int8"|"nf4"|"fp4", ...layer settings}}."""
    from compress.techniques import quantized_layers

    return quantized_layers(model)


def linear8bit_from_tensors(tensors: dict[str, torch.Tensor], *, threshold: float,
                            device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a `Linear8bitLt` from its stored `weight` (int8), `SCB` and optional `bias`."""
    bnb = _bnb()
    weight, scb = tensors["weight"].to(device), tensors["SCB"].to(device)
    out_features, in_features = weight.shape
    layer = bnb.nn.Linear8bitLt(in_features, out_features, bias="bias" in tensors, has_fp16_weights=False,
                                threshold=threshold, device="meta")
    layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False, CB=weight, SCB=scb)
    layer.bias = _frozen(tensors["bias"].to(device)) if "bias" in tensors else None
    return layer


def linear4bit_from_tensors(tensors: dict[str, torch.Tensor], *, compute_dtype: str = "float32",
                            device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a `Linear4bit` from its stored `weight` (packed uint8), `weight.*` quant state and `bias`."""
    bnb = _bnb()
    stats = {k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")}
    qs = bnb.functional.QuantState.from_dict(dict(stats), device=torch.device(device))
    out_features, in_features = qs.shape
    layer = _safe_linear4bit()(in_features, out_features, bias="bias" in tensors,
                              compute_dtype=_TORCH_DTYPES[compute_dtype], compress_statistics=qs.nested,
                              quant_type=qs.quant_type, device="meta")
    layer.weight = bnb.nn.Params4bit.from_prequantized(tensors["weight"], stats, device=device, module=layer)
    layer.bias = _frozen(tensors["bias"].to(device)) if "bias" in tensors else None
    layer.support_avx512bf16_for_cpu = False  # see module docstring
    return layer


def disable_cpu_repacking(model: nn.Module) -> int:
    """Switch off the AVX512-BF16 CPU repacking (see module docstring) on every `Linear4bit` of `model`,
    e.g. one loaded by transformers; returns how many layers were changed."""
    bnb = _bnb()
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        if getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
            raise RuntimeError("a Linear4bit was already repacked for CPU by a forward pass; call "
                               "disable_cpu_repacking right after loading, before running the model")
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def to_bnb_config(config: Int8Config | NF4Config | FP4Config):
    """The transformers `BitsAndBytesConfig` equivalent of one of our configs."""
    from transformers import BitsAndBytesConfig

    skip = list(config.skip_modules) or None  # None: transformers keeps its defaults (lm_head, tied)
    if isinstance(config, Int8Config):
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=config.threshold,
                                  llm_int8_skip_modules=skip)
    if isinstance(config, _FourBitConfig):
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=config.quant_type,
                                  bnb_4bit_use_double_quant=config.double_quant,
                                  bnb_4bit_compute_dtype=_TORCH_DTYPES[config.compute_dtype],
                                  llm_int8_skip_modules=skip)
    raise TypeError(f"to_bnb_config needs Int8Config, NF4Config or FP4Config, got {type(config).__name__}")


def _dequantize_int8_layer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    from compress.quantize.dequant import dequantize_int8

    out = {"weight": dequantize_int8(tensors["weight"], tensors["SCB"])}
    return out | ({"bias": tensors["bias"]} if "bias" in tensors else {})


def _dequantize_4bit_layer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    from compress.quantize.dequant import dequantize_state_dict

    out = dequantize_state_dict(tensors)
    return {k: v for k, v in out.items() if k in ("weight", "bias")}


def _rebuild_4bit(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> nn.Module:
    return linear4bit_from_tensors(tensors, compute_dtype=info.get("compute_dtype", "float32"))


_SOURCES = ("compress.quantize.dequant", "compress.quantize.api")


def _register() -> None:
    from compress.evaluate.system import model_size
    from compress.techniques import QuantTechnique, register_quantizer

    register_quantizer(QuantTechnique(
        name="int8", config=Int8Config, apply=_quantize_int8, size=model_size, describe_layer=_describe_int8,
        rebuild_layer=lambda tensors, info: linear8bit_from_tensors(tensors, threshold=info["threshold"]),
        dequantize_layer=_dequantize_int8_layer, hf_quantization_config=to_bnb_config, module=__name__,
        sources=_SOURCES, description="bitsandbytes LLM.int8: int8 weights, row absmax scales, fp16 outlier columns"))
    for quant_type, config in (("nf4", NF4Config), ("fp4", FP4Config)):
        register_quantizer(QuantTechnique(
            name=quant_type, config=config, apply=_quantize_4bit, size=model_size,
            describe_layer=_describe_4bit(quant_type), rebuild_layer=_rebuild_4bit,
            dequantize_layer=_dequantize_4bit_layer, hf_quantization_config=to_bnb_config, module=__name__,
            sources=_SOURCES, description=f"bitsandbytes {quant_type.upper()}: 4-bit round-to-nearest, one absmax per 64 weights"))


_register()
