"""Peak memory of serving an export: a fresh process loads it and runs one forward; weights included.

Why a subprocess: measured in the evaluating process, after the latency loop, the allocator reuses what
it already holds and the peak reads 0 (every classification variant recorded 0); and subtracting the
weights hides exactly what quantization saves.

- CPU: the resident-set high-water mark (Linux VmHWM) of the child, minus its RSS just before the load
  (interpreter, torch and the technique libraries already imported, the same for every variant).
- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, from an empty allocator:
  weights, activations and workspace.

The child runs holding the timing lock (compress/evaluate/timing.py), so it never competes with a timing
phase of another variant. `peak_memory_subprocess(path, input_spec(example))` returns bytes, or None where it cannot measure
(no /proc, the child failed): a metric not measured is left out, never recorded as 0.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from compress.evaluate.timing import TIMING_LOCK

log = logging.getLogger("shrinkwrap.evaluate")
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the compress package


def input_spec(example: Any) -> dict[str, Any]:
    """JSON description of an example input: {"shape", "dtype"} for a tensor, {"kwargs": {name: spec}}
    for a dict of keyword tensors (e.g. input_ids / attention_mask)."""
    if isinstance(example, torch.Tensor):
        return {"shape": list(example.shape), "dtype": str(example.dtype).removeprefix("torch.")}
    if isinstance(example, dict):
        return {"kwargs": {k: input_spec(v) for k, v in example.items()}}
    raise TypeError(f"example input must be a tensor or a dict of tensors, got {type(example).__name__}")


def make_input(spec: dict[str, Any], device: str = "cpu") -> Any:
    """The input `spec` describes: seeded normal values for float dtypes, ones for integer ones."""
    if "kwargs" in spec:
        return {k: make_input(v, device) for k, v in spec["kwargs"].items()}
    dtype = getattr(torch, spec.get("dtype", "float32"), None)
    if not isinstance(dtype, torch.dtype) or "shape" not in spec:
        raise ValueError(f"input spec needs 'shape' and a torch dtype name, got {spec}")
    if dtype.is_floating_point:
        return torch.randn(spec["shape"], generator=torch.Generator().manual_seed(0)).to(device, dtype)
    return torch.ones(spec["shape"], dtype=dtype, device=device)


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _quantized(root: Path) -> bool:
    if (root / "quantization.json").exists():
        return True
    config = root / "config.json"
    return config.exists() and "quantization_config" in json.loads(config.read_text())


def _child(path: str, spec: dict[str, Any], device: str) -> dict[str, float]:
    """Runs in the fresh process: import, baseline, load, forward, read the high-water mark."""
    from compress.export import load_export
    from compress.export.manifest import verify_export
    from compress.techniques import load_all

    root = Path(path)
    if _quantized(root):
        load_all()  # technique modules and their libraries (bitsandbytes): part of the baseline
    if verify_export(root).get("layout") == "hf":
        import transformers  # noqa: F401  (the library, not the model, is the baseline)
    if device.startswith("cuda"):
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    base = _status_bytes("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS (Linux >= 4.0)
    except OSError:
        base = None
    model = load_export(path)
    model = model[0] if isinstance(model, tuple) else model
    if device.startswith("cuda") and next(model.parameters()).device.type != "cuda":
        model = model.to(device)
    example = make_input(spec, device)
    with torch.inference_mode():
        model(**example) if isinstance(example, dict) else model(example)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        return {"peak_memory_bytes": float(torch.cuda.max_memory_allocated(device))}
    hwm = _status_bytes("VmHWM")
    if base is None or hwm is None:
        return {}
    return {"peak_memory_bytes": float(hwm - base), "peak_rss_bytes": float(hwm), "baseline_rss_bytes": float(base)}


def peak_memory_report(export_path: str | os.PathLike, example_input_spec: dict[str, Any], *,
                       device: str = "cpu", threads: int = 1, timeout_s: float = 600) -> dict[str, float]:
    """{"peak_memory_bytes", and on CPU "peak_rss_bytes", "baseline_rss_bytes"} from a fresh process;
    {} when it could not be measured (the reason is logged)."""
    if not (Path(export_path) / "manifest.json").is_file():
        log.warning("peak memory not measured: %s is not an export folder (no manifest.json)", export_path)
        return {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "compress.evaluate.memory", str(export_path), json.dumps(example_input_spec), device]
    try:
        with TIMING_LOCK:  # the child competes for the CPU: never while another variant is being timed
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("peak memory of %s not measured: %s", export_path, err)
        return {}
    if done.returncode != 0:
        log.warning("peak memory of %s not measured: the child exited %s: %s", export_path, done.returncode,
                    done.stderr.strip()[-500:])
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_memory_subprocess(export_path: str | os.PathLike, example_input_spec: dict[str, Any], *,
                           device: str = "cpu", timeout_s: float = 600) -> float | None:
    """Peak bytes of loading `export_path` (compress.export.load_export) and one forward on the input
    `example_input_spec` describes (`input_spec(example)`), in a fresh process; None if not measured."""
    return peak_memory_report(export_path, example_input_spec, device=device, timeout_s=timeout_s).get(
        "peak_memory_bytes")


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])))
