"""Pure-torch dequantization of bitsandbytes-quantized weights, as stored in our exports.

Why: a quantized export must load where bitsandbytes is absent (another platform, a plain inference
box), and the tests need an oracle independent of bitsandbytes. The arithmetic mirrors bitsandbytes'
reference kernels, so 4-bit weights dequantize bit-exactly:

- 4-bit (nf4 / fp4, QLoRA https://arxiv.org/abs/2305.14314): byte i holds codes 2i (high nibble) and
  2i+1 (low nibble); w = quant_map[code] * absmax[j // blocksize] in float32, then cast to the stored
  dtype. With double quantization absmax is itself uint8 codes:
  absmax = nested_quant_map[a] * nested_absmax[k // nested_blocksize] + nested_offset.
- int8 (LLM.int8 https://arxiv.org/abs/2208.07339): w = weight * (SCB[:, None] / 127), row-wise.

`dequantize_state_dict` turns a whole bitsandbytes state dict into plain float `weight`s.
"""

from __future__ import annotations

import json
import math

import torch

_QS_PREFIX = "weight.quant_state.bitsandbytes__"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def unpack_quant_state(blob: torch.Tensor) -> dict:
    """The JSON dict bitsandbytes packs into `weight.quant_state.bitsandbytes__*` (uint8 bytes)."""
    if blob.dtype != torch.uint8 or blob.ndim != 1:
        raise ValueError(f"packed quant state must be a 1-D uint8 tensor, got {blob.dtype} {tuple(blob.shape)}")
    return json.loads(bytes(blob.tolist()).decode("utf-8"))


def dequantize_blockwise(codes: torch.Tensor, absmax: torch.Tensor, quant_map: torch.Tensor,
                         blocksize: int) -> torch.Tensor:
    """float32 values quant_map[codes] * absmax[block], flat (N,); the last block may be partial."""
    values = quant_map.float()[codes.reshape(-1).long()]  # (N,)
    n = values.numel()
    blocks = math.ceil(n / blocksize)
    if absmax.numel() != blocks:
        raise ValueError(f"{n} values in blocks of {blocksize} need {blocks} absmax values, got {absmax.numel()}")
    scale = absmax.float().repeat_interleave(blocksize)[:n]  # (N,)
    return values * scale


def dequantize_4bit(packed: torch.Tensor, *, absmax: torch.Tensor, quant_map: torch.Tensor, state: dict,
                    nested_absmax: torch.Tensor | None = None,
                    nested_quant_map: torch.Tensor | None = None) -> torch.Tensor:
    """Dequantize a packed 4-bit weight (uint8 ((n+1)//2, 1)) given its quant state; returns `state`'s
    shape and dtype."""
    shape, blocksize = tuple(state["shape"]), int(state["blocksize"])
    n = math.prod(shape)
    flat = packed.reshape(-1).view(torch.uint8) if packed.dtype != torch.uint8 else packed.reshape(-1)
    if flat.numel() != (n + 1) // 2:
        raise ValueError(f"packed 4-bit weight has {flat.numel()} bytes, shape {list(shape)} needs {(n + 1) // 2}")
    if "nested_absmax" in state or nested_absmax is not None:
        if nested_absmax is None or nested_quant_map is None:
            raise ValueError("double-quantized weight needs nested_absmax and nested_quant_map tensors")
        absmax = dequantize_blockwise(absmax, nested_absmax, nested_quant_map, int(state["nested_blocksize"]))
        absmax = absmax + torch.tensor(float(state["nested_offset"]), dtype=torch.float32)
    codes = torch.empty(flat.numel() * 2, dtype=torch.uint8)  # (2 * bytes,)
    codes[0::2] = flat >> 4
    codes[1::2] = flat & 0xF
    values = dequantize_blockwise(codes[:n], absmax, quant_map, blocksize)  # (n,) float32
    return values.reshape(shape).to(_DTYPES[state["dtype"]])


def dequantize_int8(weight: torch.Tensor, scb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Row-wise int8 (out, in) with absmax SCB (out,) -> float weight, as bitsandbytes' CPU path does."""
    if weight.dtype != torch.int8 or weight.ndim != 2 or scb.shape != weight.shape[:1]:
        raise ValueError(f"int8 weight must be int8 (out, in) with SCB (out,), got {weight.dtype} "
                         f"{tuple(weight.shape)} and SCB {tuple(scb.shape)}")
    return weight.to(dtype).mul_(scb.to(dtype).unsqueeze(1).mul(1.0 / 127.0))  # (out, in)


def quantized_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """{module prefix ("" or "layers.0."): "int8" | "nf4" | "fp4"} for every quantized layer in a state dict."""
    found: dict[str, str] = {}
    for key in tensors:
        head, sep, kind = key.rpartition(_QS_PREFIX)
        if sep and not kind.count("."):
            found[head] = kind
        elif key == "SCB" or key.endswith(".SCB"):
            found[key[:-3]] = "int8"
    return found


def dequantize_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A bitsandbytes state dict with every quantized layer replaced by a plain float `weight`
    (other tensors pass through unchanged); loads into the unquantized architecture with strict=True."""
    out = dict(tensors)
    for prefix, kind in quantized_prefixes(tensors).items():
        if kind == "int8":
            out[prefix + "weight"] = dequantize_int8(tensors[prefix + "weight"], tensors[prefix + "SCB"])
            for extra in ("SCB", "weight_format"):
                out.pop(prefix + extra, None)
            continue
        state = unpack_quant_state(tensors[prefix + _QS_PREFIX + kind])
        if state.get("quant_type", kind) != kind:
            raise ValueError(f"{prefix}weight: quant state says {state.get('quant_type')!r}, key says {kind!r}")
        out[prefix + "weight"] = dequantize_4bit(
            tensors[prefix + "weight"], absmax=tensors[prefix + "weight.absmax"],
            quant_map=tensors[prefix + "weight.quant_map"], state=state,
            nested_absmax=tensors.get(prefix + "weight.nested_absmax"),
            nested_quant_map=tensors.get(prefix + "weight.nested_quant_map"))
        for key in [k for k in out if k.startswith(prefix + "weight.")]:
            del out[key]
    return out
