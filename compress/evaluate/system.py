"""System cost of a model: latency, peak memory, parameter count, weight bytes and file bytes.

Why measure bytes from the stored tensors: `get_memory_footprint` and params x dtype size miss the
quantization state (absmax scales, code maps) and count bitsandbytes' packed 4-bit weights as if each
byte were a parameter. `weight_bytes` sums the bytes of every parameter, buffer and quantization-state
tensor actually held (shared storage counted once); `estimate_bytes` is the rule of thumb
(parameters x bytes per parameter) reported next to it, so the overhead is visible.

- latency: p50/p95 over `iters` timed calls after `warmup` untimed ones (CUDA synchronised), under
  the timing protocol of compress/evaluate/timing.py (exclusive lock, fixed torch threads).
- system_metrics' peak memory: a fresh process loads the export and runs one forward, weights included
  (compress/evaluate/memory.py); absent, never 0, when there is no export path or it cannot measure.
- peak_memory(fn): the transient bytes `fn()` allocates above the start, in this process (CUDA
  `max_memory_allocated`; CPU RSS high-water mark through /proc/self/clear_refs, else psutil sampling).
- runtime_comparison: the same forward under each SDPA backend (flash / efficient / math) and, on
  request, under `torch.compile`, side by side.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.evaluate.timing import exclusive_timing
from compress.models import eval_mode

NOMINAL_BYTES = {torch.int8: 1.0, torch.uint8: 1.0}  # plus float dtypes via element_size


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def latency(fn: Callable[[], Any], *, warmup: int = 3, iters: int = 20,
            threads: int | None = None) -> dict[str, float]:
    """Milliseconds per call of `fn()`: {"p50_ms", "p95_ms", "mean_ms", "threads"} over `iters` timed
    calls after `warmup` untimed ones, holding the timing lock with torch on `threads` threads."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
    with exclusive_timing(threads) as used:
        for _ in range(warmup):
            fn()
        _sync()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            _sync()
            times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95), "mean_ms": statistics.fmean(times),
            "threads": float(used)}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of a non-empty list."""
    if not values or not 0 <= q <= 100:
        raise ValueError(f"percentile needs values and 0 <= q <= 100, got {len(values)} values, q={q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def peak_memory(fn: Callable[[], Any], *, device: str | torch.device | None = None) -> int:
    """Peak bytes allocated while `fn()` runs, above what was allocated before it started.

    device: "cuda" measures the CUDA caching allocator; "cpu" (default without CUDA) the process RSS."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                       else "cpu")
    if dev.type == "cuda":
        _sync()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        _sync()
        return max(0, torch.cuda.max_memory_allocated(dev) - base)
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    if _reset_peak_rss():
        fn()
        return max(0, _status_kb("VmHWM") * 1024 - base)
    peak, done = [base], threading.Event()

    def sample() -> None:  # fallback: sample RSS every millisecond
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(0, max(peak[0], proc.memory_info().rss) - base)


def _quant_state_tensors(param: torch.Tensor, module: nn.Module) -> Iterable[torch.Tensor]:
    """Quantization-state tensors bitsandbytes keeps beside a packed weight (absmax, code maps, SCB)."""
    qs = getattr(param, "quant_state", None)
    while qs is not None:  # Params4bit: absmax, code, offset; nested state2 for double quantization
        yield from (t for t in (qs.absmax, qs.code, getattr(qs, "offset", None)) if isinstance(t, torch.Tensor))
        qs = getattr(qs, "state2", None)
    for holder in (param, getattr(module, "state", None)):  # Int8Params / Linear8bitLt state
        for name in ("SCB", "CB"):
            t = getattr(holder, name, None)
            if isinstance(t, torch.Tensor):
                yield t


def _tensor_key(t: torch.Tensor) -> tuple:
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.nbytes)


def weight_bytes(model: nn.Module, *, modules: Callable[[str, nn.Module], bool] | None = None) -> int:
    """Bytes of all stored parameters, buffers and quantization state of `model` (or of the modules
    for which `modules(name, module)` is true); tensors sharing storage are counted once."""
    seen: set[tuple] = set()
    total = 0
    for name, mod in model.named_modules():
        if modules is not None and not modules(name, mod):
            continue
        tensors = list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False))
        for p in list(mod.parameters(recurse=False)):
            tensors.extend(_quant_state_tensors(p, mod))
        for t in tensors:
            key = _tensor_key(t)
            if key not in seen:
                seen.add(key)
                total += t.nbytes
    return total


def is_linear(name: str, module: nn.Module) -> bool:
    """`modules=` filter for weight_bytes: nn.Linear and its bitsandbytes subclasses."""
    return isinstance(module, nn.Linear)


def logical_numel(param: torch.Tensor) -> int:
    """Parameters a tensor stands for: the original shape of a packed 4-bit weight, else numel."""
    qs = getattr(param, "quant_state", None)
    return math.prod(qs.shape) if qs is not None and qs.shape is not None else param.numel()


def parameter_count(model: nn.Module) -> int:
    """Logical parameter count (a packed 4-bit weight counts its unpacked values)."""
    return sum(logical_numel(p) for p in model.parameters())


def model_size(model: nn.Module):
    """`SizeReport` of `model`: logical parameters (packed 4-bit counted unpacked), stored bytes with
    every scale and quantization state, and parameters not exactly zero (masked pruning zeros excluded;
    a quantized weight counts as nonzero: values that round to 0 in int8 were not pruned)."""
    from compress.techniques import SizeReport

    params = parameter_count(model)
    nonzero = 0
    for p in model.parameters():
        packed = getattr(p, "quant_state", None) is not None or not p.is_floating_point()
        nonzero += logical_numel(p) if packed else int(torch.count_nonzero(p.detach()))
    return SizeReport(params=params, bytes=weight_bytes(model), nonzero=nonzero)


def nominal_bytes_per_param(param: torch.Tensor) -> float:
    """Rule-of-thumb bytes per parameter: 0.5 for 4-bit, 1 for int8, else the dtype's size."""
    if getattr(param, "quant_state", None) is not None:
        return 0.5
    return NOMINAL_BYTES.get(param.dtype, float(param.element_size()))


def estimate_bytes(model: nn.Module, bytes_per_param: float | None = None) -> float:
    """Parameters x bytes per parameter: a fixed `bytes_per_param` for all, or each tensor's nominal one."""
    if bytes_per_param is not None:
        if bytes_per_param <= 0:
            raise ValueError(f"bytes_per_param must be > 0 (e.g. 4 fp32, 2 bf16, 1 int8, 0.5 4-bit), "
                             f"got {bytes_per_param}")
        return parameter_count(model) * float(bytes_per_param)
    return float(sum(logical_numel(p) * nominal_bytes_per_param(p) for p in model.parameters()))


def file_bytes(path: str | os.PathLike) -> int:
    """Size on disk of a file, or the sum over all files under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    raise FileNotFoundError(f"{path} does not exist; pass an exported file or folder")


def _forward(model: nn.Module, example_input: Any) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            if isinstance(example_input, dict):
                return model(**example_input)
            return model(example_input)
    return run


def system_metrics(model: nn.Module, example_input: Any, *, warmup: int = 3, iters: int = 20,
                   path: str | os.PathLike | None = None, memory: bool = True,
                   threads: int | None = None) -> dict[str, float]:
    """Size (`model_size`: params, weight_bytes, nonzero_params, retained_fraction), estimate_bytes,
    linear_weight_bytes, latency p50/p95/mean and `threads` of one forward on `example_input` (a tensor,
    or a dict of keyword inputs). With the export `path`: file_bytes, and unless `memory` is false
    peak_memory_bytes of a fresh load + forward (weights included) with peak_memory_ratio = peak /
    estimate_bytes; a peak that could not be measured is left out."""
    from compress.evaluate.memory import input_spec, peak_memory_subprocess

    with eval_mode(model):
        fn = _forward(model, example_input)
        out: dict[str, float] = model_size(model).metrics()
        out |= {"estimate_bytes": estimate_bytes(model),
                "linear_weight_bytes": float(weight_bytes(model, modules=is_linear))}
        timed = latency(fn, warmup=warmup, iters=iters, threads=threads)
        out["threads"] = timed.pop("threads")
        out.update({f"latency_{k}": v for k, v in timed.items()})
    if path is not None:
        out["file_bytes"] = float(file_bytes(path))
        device = next(iter(model.parameters()), torch.empty(0)).device.type
        peak = peak_memory_subprocess(path, input_spec(example_input), device=device) if memory else None
        if peak is not None:
            out["peak_memory_bytes"] = peak
            out["peak_memory_ratio"] = peak / out["estimate_bytes"] if out["estimate_bytes"] else float("nan")
    return out


SDPA_BACKENDS = ("flash", "efficient", "math")


def _sdpa_context(backend: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "math": SDPBackend.MATH}
    if backend not in names:
        raise ValueError(f"unknown SDPA backend {backend!r}; expected one of {list(names)}")
    return sdpa_kernel(names[backend])


def runtime_comparison(model: nn.Module, example_input: Any, *, backends: Iterable[str] = SDPA_BACKENDS,
                       compile: bool = False, compile_backend: str = "inductor", warmup: int = 3,
                       iters: int = 20) -> list[dict[str, Any]]:
    """Latency of one forward under each SDPA backend, plus `torch.compile` (first-call compile time
    and steady latency) when `compile` is true. A backend that cannot run here gets an "error" field."""
    model.eval()
    rows: list[dict[str, Any]] = []
    variants: list[tuple[str, Callable[[], Any], str | None]] = [
        (f"eager/sdpa={b}", _forward(model, example_input), b) for b in backends]
    if compile:
        compiled = torch.compile(model, backend=compile_backend)
        variants.append((f"compile[{compile_backend}]", _forward(compiled, example_input), None))
    for name, fn, backend in variants:
        row: dict[str, Any] = {"variant": name}
        try:
            with _sdpa_context(backend) if backend else contextlib.nullcontext():
                start = time.perf_counter()
                fn()
                row["first_call_ms"] = (time.perf_counter() - start) * 1e3
                row.update(latency(fn, warmup=warmup, iters=iters))
        except RuntimeError as err:
            row["error"] = str(err).splitlines()[0][:200]
        rows.append(row)
    return rows
