"""Calibrated weight-only quantization of decoder-only causal LMs: the `gptq` technique.

Why: round-to-nearest 4-bit (bitsandbytes nf4) costs SmolLM2-135M +29% perplexity; GPTQ (Frantar et
al. 2022, https://arxiv.org/abs/2210.17323, math in compress.quantize.gptq) uses calibration
activations to compensate each layer's rounding error. Like the reference and llm-compressor, blocks
are quantized in order: the inputs of block i are the outputs of the already-quantized blocks < i,
every nn.Linear of the block gets its Hessian H = 2 X X^T / n from one pass, is quantized, and the
block is run again to feed block i + 1. Optionally AWQ-style scaling (compress.quantize.awq) first.

Quantized layers are `QuantLinear`s whose buffers are named and packed as compressed-tensors'
pack-quantized format (`weight_packed` int32, `weight_scale`, `weight_zero_point`, `weight_shape`),
and `model.config.quantization_config` says so, so `save_pretrained` writes a checkpoint that
`AutoModelForCausalLM.from_pretrained` loads with the `compressed-tensors` package (and vLLM reads).

Why our own implementation (measured 2026-11-29 with pip --dry-run against the project's pins): llm-compressor
0.14.0.1 would downgrade transformers 5.24 -> 5.17; GPTQModel 7.6 would downgrade numpy and pull torchao,
ninja and maturin for its kernels; AutoRound 0.16.1 installs, but is sign-gradient rounding (not GPTQ), needs
datasets/pandas/pyarrow and hundreds of backward passes per block, too slow on 2 CPU cores. compressed-tensors
0.20.1 (the format library) installs cleanly and is only needed to load exports with plain transformers.

Sample recipe variant (YAML):

    quantize:
      variants:
        - name: gptq-w4
          technique: gptq
          options: {bits: 4, group_size: 64, sym: false, act_order: true, awq: true}
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import torch
from torch import nn

from compress.config import CompressConfig
from compress.quantize import gptq

MIN_TOKENS_PER_FEATURE = 1  # fewer calibration tokens than a layer's in_features: H is rank-deficient


@dataclasses.dataclass
class GPTQConfig(CompressConfig):
    """bits: 4 (or 2..8); group_size: None = the largest of 128/64/32 dividing every quantized layer's
    in_features; sym: symmetric codes (no zero point); act_order: columns by decreasing Hessian diagonal;
    damp: fraction of mean(diag H) added to H; mse: search each group's clipping range;
    keep_8bit: module-name patterns quantized at 8 bits (sensitive layers); skip_modules: kept float
    (lm_head by default: tied to the embeddings in SmolLM2); awq: AWQ-style input-channel scaling
    before GPTQ; min_samples: the fewest calibration sequences accepted."""

    bits: int = 4
    group_size: int | None = None
    sym: bool = False         # defaults: the setting that met the issue-19 goal on SmolLM2-135M (+7.0%,
    act_order: bool = True    # bench/results/quantize_llm.md); without awq it was +10.7%
    damp: float = 0.01
    mse: bool = False
    keep_8bit: tuple[str, ...] = ()
    skip_modules: tuple[str, ...] = ("lm_head",)
    awq: bool = True
    min_samples: int = 4

    def __post_init__(self):
        if self.bits not in (2, 4, 8):
            raise ValueError(f"GPTQConfig.bits must be 2, 4 or 8 (what pack-quantized stores), got {self.bits!r}")
        if self.group_size is not None and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ValueError(f"GPTQConfig.group_size must be a positive int (e.g. 64) or None, got {self.group_size!r}")
        if not 0 <= float(self.damp) < 1:
            raise ValueError(f"GPTQConfig.damp must be in [0, 1) (0.01 = the paper's 1%), got {self.damp!r}")
        for name in ("sym", "act_order", "mse", "awq"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTQConfig.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("keep_8bit", "skip_modules"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(s, str) and s for s in value):
                raise ValueError(f"GPTQConfig.{name} must be a list of module names, got {value!r}")
            setattr(self, name, tuple(value))
        if self.keep_8bit and not self.sym and self.bits != 8:
            raise ValueError("GPTQConfig.keep_8bit needs sym=true: transformers 5.24 loads asymmetric compressed-tensors "
                             "checkpoints only through its dequantize path, which reads every layer with one scheme, "
                             f"so mixed 4/8-bit asymmetric exports reload wrong; got keep_8bit={list(self.keep_8bit)}, "
                             "sym=false")
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise ValueError(f"GPTQConfig.min_samples must be an int >= 1, got {self.min_samples!r}")


class QuantLinear(nn.Module):
    """y = x W^T + b with W = (codes - zero) * scale group-wise, stored packed (compressed-tensors
    pack-quantized names). forward dequantizes W on every call (CPU-friendly, no custom kernel)."""

    def __init__(self, in_features: int, out_features: int, *, bits: int, group_size: int, sym: bool,
                 bias: bool, scale_dtype: torch.dtype = torch.float16):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.sym = bits, group_size, sym
        groups, per = in_features // group_size, 32 // bits
        self.register_buffer("weight_packed", torch.zeros(out_features, -(-in_features // per), dtype=torch.int32))
        self.register_buffer("weight_scale", torch.ones(out_features, groups, dtype=scale_dtype))
        self.register_buffer("weight_shape", torch.tensor([out_features, in_features], dtype=torch.int64))
        if not sym:
            self.register_buffer("weight_zero_point", torch.zeros(-(-out_features // per), groups, dtype=torch.int32))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_codes(cls, codes: torch.Tensor, grid: gptq.QuantGrid, group_size: int, sym: bool,
                   bias: torch.Tensor | None) -> QuantLinear:
        out, cols = codes.shape
        layer = cls(cols, out, bits=grid.bits, group_size=group_size, sym=sym, bias=bias is not None)
        layer.weight_packed.copy_(gptq.pack_int32(codes, grid.bits))
        layer.weight_scale.copy_(grid.scale)
        if not sym:
            layer.weight_zero_point.copy_(gptq.pack_int32(grid.zero, grid.bits, dim=0))
        if bias is not None:
            layer.bias.data.copy_(bias.detach().float())
        return layer

    def codes(self) -> torch.Tensor:
        return gptq.unpack_int32(self.weight_packed, self.bits, (self.out_features, self.in_features))

    def zero_points(self) -> torch.Tensor:
        groups = self.weight_scale.shape[1]
        if self.sym:
            return torch.zeros(self.out_features, groups, dtype=torch.int32)
        return gptq.unpack_int32(self.weight_zero_point, self.bits, (self.out_features, groups), dim=0)

    def dequantized_weight(self) -> torch.Tensor:
        grid = gptq.QuantGrid(self.bits, self.weight_scale.float(), self.zero_points())
        return gptq.dequantize(self.codes(), grid, self.group_size)          # (out, in) float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight().to(x.device, x.dtype)
        return nn.functional.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, sym={self.sym}")


def calibration_batches(tokenizer, texts: list[str], n_samples: int, seq_len: int) -> list[torch.Tensor]:
    """`n_samples` token-id tensors (1, seq_len): `texts` tokenized, joined with EOS, cut into windows."""
    if isinstance(texts, str) or not texts:
        raise ValueError(f"texts must be a non-empty list of strings, got {type(texts).__name__}")
    if n_samples < 1 or seq_len < 2:
        raise ValueError(f"need n_samples >= 1 and seq_len >= 2, got {n_samples}, {seq_len}")
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + sep
        if len(ids) >= n_samples * seq_len:
            break
    if len(ids) < n_samples * seq_len:
        raise ValueError(f"the texts hold {len(ids)} tokens, fewer than n_samples * seq_len = {n_samples} * "
                         f"{seq_len}; pass more text or lower n_samples / seq_len")
    flat = torch.tensor(ids[:n_samples * seq_len], dtype=torch.long)
    return list(flat.reshape(n_samples, 1, seq_len))


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a transformers decoder-only LM (model.model.layers: Llama, Mistral, Qwen2...)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise TypeError(f"gptq quantizes decoder-only transformers causal LMs whose blocks are model.model.layers "
                        f"(Llama, Mistral, Qwen2, ...); {type(model).__name__} has none. Quantize it with nf4/int8")
    return layers


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    """`name` is a pattern, ends with "." + pattern, starts with pattern + ".", or has it as a component:
    "down_proj", "layers.0.mlp.down_proj" and "model.layers.0" all match model.layers.0.mlp.down_proj."""
    parts = name.split(".")
    return any(name == p or name.endswith("." + p) or name.startswith(p + ".") or p in parts for p in patterns)


def pick_group_size(model: nn.Module, config: GPTQConfig) -> int:
    """config.group_size checked against every targeted layer, or the largest of 128/64/32 dividing all."""
    widths = {name: m.in_features for name, m in _targets(model, config).items()}
    if config.group_size is not None:
        for name, width in widths.items():
            gptq.check_group_size(width, config.group_size, name)
        return config.group_size
    for size in (128, 64, 32):
        if all(w % size == 0 for w in widths.values()):
            return size
    raise ValueError(f"no group size of 128/64/32 divides every layer's in_features ({sorted(set(widths.values()))}); "
                     "set group_size to a common divisor or skip the odd layers (skip_modules)")


def _targets(model: nn.Module, config: GPTQConfig) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules()
            if type(m) is nn.Linear and ".layers." in f".{name}" and not _matches(name, config.skip_modules)}


class _Stop(Exception):
    pass


@torch.no_grad()
def _first_block_inputs(model: nn.Module, calibration: list[torch.Tensor]) -> list[tuple[torch.Tensor, dict]]:
    """(hidden states, keyword arguments) that block 0 receives for each calibration batch."""
    captured: list[tuple[torch.Tensor, dict]] = []

    def grab(module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden, {k: v for k, v in kwargs.items() if k not in ("past_key_values", "use_cache")}))
        raise _Stop

    handle = decoder_layers(model)[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for ids in calibration:
            with contextlib.suppress(_Stop):
                model(input_ids=ids.reshape(-1, ids.shape[-1]), use_cache=False)
    finally:
        handle.remove()
    return captured


def _run_block(block: nn.Module, inputs: list[tuple[torch.Tensor, dict]]) -> list[torch.Tensor]:
    outs = []
    for hidden, kwargs in inputs:
        out = block(hidden, **kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return outs


@torch.no_grad()
def _block_hessians(block: nn.Module, linears: dict[str, nn.Linear], inputs) -> dict[str, torch.Tensor]:
    """H = 2 X X^T / n (float32) for the input of every linear in `block`, over all calibration tokens.
    Linears fed the very same tensor (q/k/v, gate/up) share one Hessian."""
    hess: dict[str, torch.Tensor] = {}
    alias: dict[str, str] = {}
    seen: list[tuple[torch.Tensor, str]] = []                                  # this batch's inputs
    count: dict[str, int] = {}

    def hook(name):
        def add(module, args):
            x = args[0]
            owner = next((n for t, n in seen if t is x), None)
            if owner is not None:
                alias[name] = owner
                return
            seen.append((x, name))
            x = x.reshape(-1, x.shape[-1]).float()                             # (tokens, in)
            n, t = count.get(name, 0), x.shape[0]
            h = hess.setdefault(name, torch.zeros(x.shape[1], x.shape[1]))
            h.mul_(n / (n + t)).addmm_(x.T, x, alpha=2 / (n + t))
            count[name] = n + t
        return add

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in linears.items()]
    try:
        for hidden, kwargs in inputs:
            seen.clear()
            block(hidden, **kwargs)
    finally:
        seen.clear()
        for h in handles:
            h.remove()
    return {name: hess[alias.get(name, name)] for name in linears}


def _swap(root: nn.Module, name: str, layer: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, layer)


def quantize_gptq(model: nn.Module, config: GPTQConfig, calibration: list[torch.Tensor] | None) -> nn.Module:
    """Quantize `model`'s decoder-block linears in place with GPTQ; sets `model.gptq_report` (per-layer
    GPTQ and round-to-nearest reconstruction errors, seconds) and the compressed-tensors config."""
    layers = decoder_layers(model)
    _check_calibration(calibration, config, model)
    group_size = pick_group_size(model, config)
    start, report = time.perf_counter(), {}
    inputs = _first_block_inputs(model, calibration)
    for block in layers:
        prefix = _block_prefix(model, block)
        linears = {n: m for n, m in _targets(model, config).items() if n.startswith(prefix + ".")}
        if config.awq:
            from compress.quantize.awq import scale_block

            scale_block(block, inputs, bits=config.bits, group_size=group_size, sym=config.sym)
        hessians = _block_hessians(block, linears, inputs)
        for name, linear in linears.items():
            bits = 8 if _matches(name, config.keep_8bit) else config.bits
            report[name] = _quantize_linear(model, name, linear, hessians[name], config, bits, group_size)
        inputs = [(out, kwargs) for out, (_, kwargs) in zip(_run_block(block, inputs), inputs, strict=True)]
    model.gptq_report = {"seconds": time.perf_counter() - start, "group_size": group_size, "layers": report}
    model.config.quantization_config = quantization_config(model)
    model.quantization_config = config.to_dict()
    return model


def _block_prefix(model: nn.Module, block: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is block)


def _quantize_linear(model, name, linear, hessian, config: GPTQConfig, bits: int, group_size: int) -> dict:
    w = linear.weight.detach().float()
    codes, deq, grid = gptq.gptq_quantize(w, hessian, bits=bits, group_size=group_size, sym=config.sym,
                                          act_order=config.act_order, damp=config.damp, mse=config.mse)
    _, rtn, _ = gptq.rtn_quantize(w, bits, group_size, sym=config.sym, mse=config.mse)
    _swap(model, name, QuantLinear.from_codes(codes, grid, group_size, config.sym, linear.bias))
    return {"bits": bits, "params": w.numel(), "gptq_error": gptq.reconstruction_error(w, deq, hessian),
            "rtn_error": gptq.reconstruction_error(w, rtn, hessian),
            "output_energy": gptq.reconstruction_error(w, torch.zeros_like(w), hessian)}  # ||W X||^2 / n


def sensitive_layers(report: dict[str, dict], fraction: float) -> list[str]:
    """Layers of a gptq_report with the largest relative error (GPTQ error / output energy), taken in that
    order until they hold `fraction` of the quantized weights: candidates for keep_8bit."""
    ranked = sorted(report, key=lambda n: -report[n]["gptq_error"] / max(report[n]["output_energy"], 1e-12))
    total, picked, held = sum(v["params"] for v in report.values()), [], 0
    for name in ranked:
        if held + report[name]["params"] > fraction * total:
            break
        picked.append(name)
        held += report[name]["params"]
    return picked


def _check_calibration(calibration: Any, config: GPTQConfig, model: nn.Module) -> None:
    if calibration is None or isinstance(calibration, torch.Tensor) or not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.long for t in calibration):
        raise TypeError("gptq needs calibration: a list of token-id tensors (int64, (1, seq_len) each), e.g. from "
                        f"compress.quantize.calibrated.calibration_batches; got {type(calibration).__name__}")
    tokens = sum(t.numel() for t in calibration)
    widest = max((m.in_features for m in _targets(model, config).values()), default=0)
    if len(calibration) < config.min_samples or tokens < widest * MIN_TOKENS_PER_FEATURE:
        raise ValueError(f"calibration too small: {len(calibration)} sequences, {tokens} tokens; gptq needs at least "
                         f"min_samples={config.min_samples} sequences and as many tokens as the widest layer's "
                         f"in_features ({widest}); pass more or longer calibration texts")


def _describe(module: nn.Module) -> dict[str, Any] | None:
    if not isinstance(module, QuantLinear):
        return None
    return {"bits": module.bits, "group_size": module.group_size, "sym": module.sym}


def rebuild_layer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> QuantLinear:
    """A QuantLinear from its stored buffers (names relative to the layer) and describe-layer settings."""
    out, cols = (int(v) for v in tensors["weight_shape"])
    layer = QuantLinear(cols, out, bits=info["bits"], group_size=info["group_size"], sym=info["sym"],
                        bias="bias" in tensors, scale_dtype=tensors["weight_scale"].dtype)
    layer.load_state_dict(tensors, strict=True)
    return layer


def _dequantize_layer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    layer = rebuild_layer(tensors, info)
    return {"weight": layer.dequantized_weight()} | ({"bias": tensors["bias"]} if "bias" in tensors else {})


def model_size(model: nn.Module):
    """compress.evaluate.system.model_size with each QuantLinear counted as its out x in logical weights."""
    from compress.evaluate.system import model_size as base_size
    from compress.techniques import SizeReport

    base = base_size(model)
    extra = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QuantLinear))
    return SizeReport(params=base.params + extra, bytes=base.bytes, nonzero=base.nonzero + extra)


def _register() -> None:
    from compress.techniques import QuantTechnique, register_quantizer

    register_quantizer(QuantTechnique(
        name="gptq", config=GPTQConfig, apply=quantize_gptq, size=model_size, describe_layer=_describe,
        rebuild_layer=rebuild_layer, dequantize_layer=_dequantize_layer, needs_calibration=True,
        module=__name__, sources=("compress.quantize.gptq", "compress.quantize.awq"), description="GPTQ (Frantar et al. 2022): calibrated 4-bit group-wise weights, "
                                     "exported as compressed-tensors pack-quantized"))


_register()


# ------------------------------------------------------------ the Hugging Face format of this technique
FORMAT = "pack-quantized"


def _scheme(layer) -> tuple[int, int, bool]:
    return (layer.bits, layer.group_size, layer.sym)


def quantization_config(model: nn.Module) -> dict[str, Any]:
    """The compressed-tensors `quantization_config` (config.json) describing `model`'s QuantLinear layers."""
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
