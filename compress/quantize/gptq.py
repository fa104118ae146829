"""GPTQ: one linear layer's weights to 3..8-bit integers with second-order error compensation.

Pure tensor math, no model code (the driver over decoder blocks is compress.quantize.calibrated).

Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", https://arxiv.org/abs/2210.17323. For a layer y = W x with calibration inputs
X (n tokens), GPTQ minimises ||W X - Q X||_F^2 one column at a time: with H = 2 X X^T / n (the Hessian
of that loss), column j is rounded to the grid, and its error e_j = (w_j - q_j) / [H^-1]_jj is pushed
onto the columns not yet quantized: W[:, j+1:] -= e_j [H^-1]_{j, j+1:}. Using the upper Cholesky
factor of H^-1 (Algorithm 1 of the paper) gives the same updates stably; updates are applied lazily
per block of columns. Options as in the reference code (github.com/IST-DASLab/gptq):

- damp: lambda = damp * mean(diag H) is added to diag H (1% in the paper), so H is invertible;
- group_size: one scale (and zero point) per `group_size` input columns per output row;
- act_order: columns in order of decreasing diag H (the most active inputs first, whose error can still
  be spread over many columns); group scales are then fixed from the original weights up front
  ("static groups"), so the stored layout stays plain groups in the original column order;
- sym: codes q in [-2^(b-1), 2^(b-1)-1], w ~ q * scale; asymmetric: w ~ (q - zero) * scale;
- mse: shrink each group's range over a small grid to minimise its rounding error (the reference
  code's `mse` option), instead of plain min/max.

Codes are stored signed (4-bit: -8..7), as compressed-tensors does, and `pack_int32` packs them the
way its pack-quantized format does (element i of each 32 at bits 4*i of word i // 8 for 4 bits).
"""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass(frozen=True)
class QuantGrid:
    """Per-row, per-group quantization grid: w ~ (q - zero) * scale with q in [qmin, qmax]."""

    bits: int
    scale: torch.Tensor   # (out, groups) float32
    zero: torch.Tensor    # (out, groups) int32, signed (0 for symmetric)

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1


def _range_params(xmin: torch.Tensor, xmax: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and signed zero point for ranges [xmin, xmax] (each (..., )), with 0 always representable."""
    levels = (1 << bits) - 1
    xmin, xmax = torch.clamp(xmin, max=0), torch.clamp(xmax, min=0)
    scale = 2 * torch.maximum(-xmin, xmax) / levels if sym else (xmax - xmin) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero group: any scale is exact
    scale = scale.half().float()  # scales are stored as float16: quantize against what is stored
    if sym:
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    zero = torch.round(-xmin / scale).to(torch.int32) - (1 << (bits - 1))
    return scale, torch.clamp(zero, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round `w` to the grid; returns (signed codes int32, dequantized float). Broadcasting shapes."""
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = torch.clamp(torch.round(w / scale) + zero, qmin, qmax)
    return q.to(torch.int32), (q - zero) * scale


def find_grid(w: torch.Tensor, bits: int, group_size: int, *, sym: bool, mse: bool = False,
              shrink_steps: int = 20, norm: float = 2.4) -> QuantGrid:
    """Grid for weights `w` (out, in): one scale/zero per row and `group_size` columns."""
    out, cols = w.shape
    g = w.float().reshape(out, cols // group_size, group_size)            # (out, G, gs)
    xmin, xmax = g.amin(-1), g.amax(-1)                                  # (out, G)
    scale, zero = _range_params(xmin, xmax, bits, sym)
    if mse:
        best = torch.full_like(scale, float("inf"))
        for step in range(shrink_steps):
            p = 1 - step / (shrink_steps * 1.25)                          # 1.0 .. 0.2 like the reference
            s, z = _range_params(p * xmin, p * xmax, bits, sym)
            _, deq = fake_quantize(g, s[..., None], z[..., None], bits)
            err = (deq - g).abs().pow(norm).sum(-1)                       # (out, G)
            better = err < best
            best, scale, zero = torch.where(better, err, best), torch.where(better, s, scale), torch.where(better, z, zero)
    return QuantGrid(bits=bits, scale=scale, zero=zero)


def check_group_size(in_features: int, group_size: int, name: str = "layer") -> None:
    if group_size < 1 or in_features % group_size:
        divisors = [g for g in (128, 64, 32, 16) if in_features % g == 0]
        raise ValueError(f"group_size {group_size} does not divide {name}'s in_features {in_features}; "
                         f"use one of {divisors or [in_features]} (or leave group_size unset to pick the largest "
                         "of 128/64/32 that divides every layer)")


def rtn_quantize(w: torch.Tensor, bits: int, group_size: int, *, sym: bool, mse: bool = False):
    """Round-to-nearest on the same grid: (codes (out, in) int32, dequantized float32, grid)."""
    check_group_size(w.shape[1], group_size)
    grid = find_grid(w, bits, group_size, sym=sym, mse=mse)
    idx = torch.arange(w.shape[1]) // group_size
    q, deq = fake_quantize(w.float(), grid.scale[:, idx], grid.zero[:, idx], bits)
    return q, deq, grid


def _inverse_hessian_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, float32."""
    h = h.clone()
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    try:
        chol = torch.linalg.cholesky(h)
    except torch.linalg.LinAlgError as err:
        raise ValueError(f"the Hessian is not positive definite even with damp={damp}; raise damp (e.g. 0.1) "
                         "or give more calibration tokens") from err
    return torch.linalg.cholesky(torch.cholesky_inverse(chol), upper=True)


@torch.no_grad()
def gptq_quantize(w: torch.Tensor, h: torch.Tensor, *, bits: int = 4, group_size: int = 128, sym: bool = True,
                  act_order: bool = False, damp: float = 0.01, mse: bool = False, block_size: int = 128):
    """GPTQ of weights `w` (out, in) with Hessian `h` (in, in) = 2 X X^T / n.

    Returns (codes (out, in) int32 signed, dequantized (out, in) float32, grid); columns in the
    original order. Dead inputs (diag H == 0) are quantized as zeros."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    if h.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"Hessian shape {tuple(h.shape)} does not match weight in_features {w.shape[1]}")
    check_group_size(w.shape[1], group_size)
    w, h = w.detach().clone().float(), h.detach().clone().double()
    cols = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    grid = find_grid(w, bits, group_size, sym=sym, mse=mse) if act_order else None
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(cols)
    w, h = w[:, perm], h[perm][:, perm]
    hinv = _inverse_hessian_factor(h, damp).float()                      # (in, in) upper
    scales = torch.zeros(w.shape[0], cols // group_size)
    zeros = torch.zeros(w.shape[0], cols // group_size, dtype=torch.int32)
    codes = torch.zeros_like(w, dtype=torch.int32)
    block = group_size * max(1, math.ceil(block_size / group_size))     # blocks align with groups
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1, err1, hinv1 = w[:, i1:i2].clone(), torch.zeros(w.shape[0], i2 - i1), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if grid is None and col % group_size == 0:                   # dynamic groups: current weights
                g = find_grid(w1[:, i:i + group_size], bits, group_size, sym=sym, mse=mse)
                scales[:, col // group_size], zeros[:, col // group_size] = g.scale[:, 0], g.zero[:, 0]
            group = int(perm[col]) // group_size
            s, z = (grid.scale[:, group], grid.zero[:, group]) if grid is not None else \
                (scales[:, group], zeros[:, group])
            q, deq = fake_quantize(w1[:, i], s, z, bits)                 # (out,)
            codes[:, col] = q
            err = (w1[:, i] - deq) / hinv1[i, i]                          # (out,)
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            w1[:, i] = deq
            err1[:, i] = err
        w[:, i1:i2] = w1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    inv = torch.argsort(perm)
    codes, w = codes[:, inv], w[:, inv]
    if grid is None:
        grid = QuantGrid(bits=bits, scale=scales, zero=zeros)
    return codes, dequantize(codes, grid, group_size), grid


def dequantize(codes: torch.Tensor, grid: QuantGrid, group_size: int) -> torch.Tensor:
    """(codes - zero) * scale, group-wise; (out, in) float32."""
    idx = torch.arange(codes.shape[1]) // group_size
    return (codes - grid.zero[:, idx]).float() * grid.scale[:, idx].float()


def reconstruction_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """||W X - Q X||_F^2 / n = tr((W - Q) H (W - Q)^T) / 2 for H = 2 X X^T / n."""
    d = (w.double() - q.double())
    return float(torch.einsum("oi,ij,oj->", d, h.double(), d) / 2)


def pack_int32(codes: torch.Tensor, bits: int, dim: int = 1) -> torch.Tensor:
    """Pack signed `codes` (offset by 2^(bits-1) to unsigned) into int32 along `dim` (0 or 1); `bits`
    must divide 32. Element i of each run of 32/bits sits at bits [bits*i, bits*(i+1)) of its word."""
    if 32 % bits:
        raise ValueError(f"pack_int32 packs 1, 2, 4 or 8 bits, got {bits}")
    per = 32 // bits
    u = (codes.to(torch.int64) + (1 << (bits - 1))) & ((1 << bits) - 1)
    if dim == 0:
        u = u.T
    rows, cols = u.shape
    u = torch.nn.functional.pad(u, (0, (-cols) % per)).reshape(rows, -1, per)      # (rows, words, per)
    shifts = torch.arange(per, dtype=torch.int64) * bits
    words = (u << shifts).sum(-1)                                                   # < 2^32
    packed = torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)
    return packed.T.contiguous() if dim == 0 else packed


def unpack_int32(packed: torch.Tensor, bits: int, shape: tuple[int, int], dim: int = 1) -> torch.Tensor:
    """Inverse of `pack_int32`: signed int32 codes of `shape` (out, in)."""
    per = 32 // bits
    p = packed.T if dim == 0 else packed
    words = p.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(per, dtype=torch.int64) * bits
    u = (words[..., None] >> shifts) & ((1 << bits) - 1)                            # (rows, words, per)
    u = u.reshape(p.shape[0], -1)
    rows, cols = (shape[1], shape[0]) if dim == 0 else shape
    u = u[:rows, :cols]
    out = (u - (1 << (bits - 1))).to(torch.int32)
    return out.T.contiguous() if dim == 0 else out
