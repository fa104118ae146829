"""`int8-dynamic`: int8 weights (per output row, symmetric) with activations quantized per token at run
time, and the matmul on int8 CPU kernels. The CPU-fast quantization: bitsandbytes' CPU kernels
dequantize to float and run slower than fp32, these multiply in int8.

Dynamic quantization (Jacob et al. 2018, https://arxiv.org/abs/1712.05877; per-token activation scales
as in LLM.int8's vector-wise quantization, https://arxiv.org/abs/2208.07339, without its outlier
columns): W ~= qweight * scale[:, None] with qweight int8 in [-127, 127] and scale = row absmax / 127;
at each forward every activation row (token) gets its own scale from its own range, then
y = (x_q @ qweight^T) * (x_scale * scale) + bias, accumulated in int32.

Why per token: one scale for a whole (tokens x features) batch, as `quantize_dynamic` does, lets one
outlier token crush every other; on SmolLM2-135M (12 held-out passages) that cost +320% perplexity
against +2.45% per token, and +1.08% with `down_proj` (whose inputs carry the largest outliers) left in
fp32; decode at batch 1 runs at 0.65x / 0.80x of fp32 (bench/results/serve_load.md).

Kernels (measured on this 2-core AVX512-VNNI EPYC, torch 2.13, 2 threads):
- below 8 rows (decode): torch's `quantized::linear_dynamic` on fbgemm-packed weights, called once per
  row so its per-input scale is a per-token scale. Linear 960->2560->960 at batch 1: 0.10 ms vs fp32
  1.04 ms. Packed for the default "x86" engine it took 3.3 ms (small batches go through onednn), so we
  pack for fbgemm explicitly.
- from 8 rows (prefill, batches): `torch._int_mm` (int8 x int8 -> int32): 576x1536 at 32 rows 0.3-0.5 ms
  vs fp32 2.2-2.8 ms; at 1 row it is slower than fp32 (0.65 vs 0.22 ms), hence the split.
- torchao 0.18 `Int8DynamicActivationInt8WeightConfig` installs against torch 2.13 but runs eagerly
  through tensor subclasses: 23 ms at batch 1, 32 ms at batch 32 (slower than fp32), so we do not use it.
  `torch.ao.quantization.quantize_dynamic` (deprecated, warns) would quantize per tensor; we call the
  kernels directly.
Our layer's state dict is plain safetensors-friendly tensors: `qweight` int8 (out, in), `scale` float32
(out,), `bias`. The kernels' weight layouts (fbgemm packed, transposed for _int_mm) are rebuilt on first
use, so in memory the int8 weights are held up to three times (still 3/4 of fp32).

Tied weights (an lm_head sharing the embedding matrix) are left in float: a quantized copy would
silently untie them and HF's save_pretrained drops tied keys.

    quantize_(model, DynamicInt8Config(skip_modules=["classifier"]))

Sample recipe variant (YAML):

    quantize:
      variants:
        - {name: int8-dyn, technique: int8-dynamic, options: {skip_modules: [lm_head]}}
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.config import CompressConfig
from compress.evaluate.system import model_size
from compress.techniques import QuantTechnique, register_quantizer

ENGINE = "fbgemm"  # see module docstring: "x86" packs small batches for a 30x slower path here
INT_MM_MIN_ROWS = 8  # from 8 activation rows torch._int_mm beats per-row fbgemm calls (see module docstring)
# torch._int_mm on CPU is fast only on AVX512 kernels. On an AVX2 EPYC (torch cpu capability "AVX2") it ran
# 128 x 576 x 1536 in 179 ms against 3.3 ms for the fp32 matmul (one thread), so SmolLM2's 128-token
# prefill took 21x fp32's time (bench/results/quantize.md, 2026-11-29). There, batches of >= 8 rows
# multiply by the weights dequantized on the fly (int8 weights, float activations: no per-token rounding).
INT_MM_FAST = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
NAME = "int8-dynamic"


@dataclasses.dataclass
class DynamicInt8Config(CompressConfig):
    """Dynamic int8: which `nn.Linear`s to leave in float (dotted name, prefix or name component)."""

    skip_modules: tuple[str, ...] = ()

    def __post_init__(self):
        skip = self.skip_modules
        if isinstance(skip, str) or not all(isinstance(s, str) and s for s in skip):
            raise ValueError(f"DynamicInt8Config.skip_modules must be a list of module names (e.g. "
                             f"['lm_head', 'classifier']), got {skip!r}")
        self.skip_modules = tuple(skip)


@contextlib.contextmanager
def _engine(name: str = ENGINE) -> Iterator[None]:
    if name not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"torch has no {name!r} quantized engine here (supported: "
                           f"{torch.backends.quantized.supported_engines}); int8-dynamic needs an x86 CPU build")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (int8 (out, in) in [-127, 127], float32 scale (out,)) with W ~= q * scale."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0                       # (out,)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)       # (out, in)
    return q, scale


class DynamicInt8Linear(nn.Module):
    """y = dynamic-int8(x) @ qweight^T * scale + bias, on fbgemm's kernels. `qweight` (an int8 parameter,
    frozen, so parameter counts stay logical), the `scale` buffer and the float `bias` are what the state
    dict and exports hold. Not named `weight`: a loader that does not know the layer (plain transformers
    `from_pretrained`) then reports the weights missing instead of casting int8 codes to float."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        if weight.dtype != torch.int8 or weight.ndim != 2 or scale.shape != weight.shape[:1]:
            raise ValueError(f"DynamicInt8Linear needs an int8 (out, in) weight and a (out,) scale, got "
                             f"{weight.dtype} {tuple(weight.shape)} and scale {tuple(scale.shape)}")
        self.out_features, self.in_features = weight.shape
        self.qweight = nn.Parameter(weight.contiguous(), requires_grad=False)
        self.register_buffer("scale", scale.float().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        self._packed = None  # fbgemm's packed copy, built on first use
        self._qweight_t = None  # (in, out) copy for torch._int_mm, built on first use

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> DynamicInt8Linear:
        q, scale = quantize_rows(linear.weight)
        return cls(q, scale, linear.bias)

    def _pack(self):
        with warnings.catch_warnings():  # quantized tensors are deprecated, the fbgemm ops they feed are not
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch._make_per_channel_quantized_tensor(
                self.qweight, self.scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0)
        with _engine():
            return torch.ops.quantized.linear_prepack(qweight, self.bias)

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = self._qweight_t = None  # new tensors: pack again on the next forward
        return super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float().contiguous()                      # (M, in)
        if rows.shape[0] >= INT_MM_MIN_ROWS:
            y = self._per_token_int_mm(rows) if INT_MM_FAST else self._dequantized_mm(rows)
        else:  # fbgemm quantizes its whole input with one scale: one call per row makes that per token
            if self._packed is None:
                self._packed = self._pack()
            y = torch.cat([torch.ops.quantized.linear_dynamic(row[None], self._packed, True) for row in rows])
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)             # (..., out_features)

    def _per_token_int_mm(self, rows: torch.Tensor) -> torch.Tensor:
        """Symmetric int8 per token (row), int8 x int8 -> int32 on torch's CPU kernel, rescaled."""
        if self._qweight_t is None:
            self._qweight_t = self.qweight.t().contiguous()                       # (in, out)
        step = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0      # (M, 1)
        q = torch.round(rows / step).clamp_(-127, 127).to(torch.int8)             # (M, in)
        y = torch._int_mm(q, self._qweight_t).float().mul_(step * self.scale)     # (M, out)
        return y if self.bias is None else y.add_(self.bias)

    def _dequantized_mm(self, rows: torch.Tensor) -> torch.Tensor:
        """rows @ (qweight * scale)^T + bias in float, the weights dequantized for this call only."""
        return F.linear(rows, self.dequantized_weight(), self.bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale[:, None]  # (out, in)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _is_skipped(name: str, skip: tuple[str, ...]) -> bool:
    parts = name.split(".")
    return any(name == s or name.startswith(s + ".") or s in parts for s in skip)


def _tied(model: nn.Module) -> set[int]:
    """ids of weight tensors used by more than one module (e.g. an lm_head tied to the embedding)."""
    seen: dict[int, int] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            seen[id(weight)] = seen.get(id(weight), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def quantize_dynamic_int8(model: nn.Module, config: DynamicInt8Config | None = None,
                          calibration: Any = None) -> nn.Module:
    """Swap every float `nn.Linear` of `model` (not skipped, not tied) for a `DynamicInt8Linear`, in place."""
    config = config or DynamicInt8Config()
    tied = _tied(model)
    targets = [(name, mod) for name, mod in model.named_modules()
               if type(mod) is nn.Linear and id(mod.weight) not in tied and not _is_skipped(name, config.skip_modules)]
    if not targets:
        raise ValueError(f"DynamicInt8Config found no float nn.Linear to quantize in {type(model).__name__} "
                         f"(skip_modules={list(config.skip_modules)}); check the model or the skip list")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, DynamicInt8Linear.from_linear(linear).to(linear.weight.device))
    model.quantization_config = config.to_dict()  # what export writes next to the weights
    return model


def _describe(module: nn.Module) -> dict[str, Any] | None:
    return {"scheme": "per-row symmetric int8, dynamic per-batch activations"} \
        if isinstance(module, DynamicInt8Linear) else None


def _rebuild(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> nn.Module:
    return DynamicInt8Linear(tensors["qweight"], tensors["scale"], tensors.get("bias"))


def _dequantize(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, torch.Tensor]:
    weight = tensors["qweight"].float() * tensors["scale"].float()[:, None]  # (out, in)
    return {"weight": weight} | ({"bias": tensors["bias"]} if "bias" in tensors else {})


DYNAMIC_INT8 = register_quantizer(QuantTechnique(
    name=NAME, config=DynamicInt8Config, apply=quantize_dynamic_int8, size=model_size, describe_layer=_describe,
    rebuild_layer=_rebuild, dequantize_layer=_dequantize, module=__name__,
    description="dynamic int8: per-row int8 weights, activations quantized per batch, fbgemm int8 matmul"))
