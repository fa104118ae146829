"""Timing repeatability: the demo's three variants (MLP 784-128-10: sparse-fp32, int8, nf4) evaluated
concurrently in a thread pool, as the flow does, in two separate processes ("two runs"); p50 of each
variant in run 1 vs run 2. Arms: `protocol` (compress/evaluate/timing.py: timing phases serialised by
the process-wide lock, fixed torch threads) and `no-lock` (the lock replaced by a no-op: what the flow
measured before issue 18). Goal: |p50 run 2 / p50 run 1 - 1| <= 20 % for every variant.

    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/timing_repeat.py [--iters 50] [--threads 2]

Writes bench/results/timing_repeat.md. Weights are random (latency does not depend on their values).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VARIANTS = ("sparse-fp32", "int8", "nf4")


def export_variants(dest: Path) -> dict[str, str]:
    import torch

    from compress.export import export_model
    from compress.models import MLP
    from compress.quantize import Int8Config, NF4Config, quantize_

    paths = {}
    for name, config in zip(VARIANTS, (None, Int8Config(), NF4Config()), strict=True):
        torch.manual_seed(0)
        model = MLP(784, (128,), 10).eval()
        if config is not None:
            quantize_(model, config)
        paths[name] = str(export_model(model, dest / name).path)
    return paths


def one_run(paths: dict[str, str], iters: int, warmup: int, lock: bool) -> dict[str, float]:
    """Evaluate every variant concurrently (3 threads), return {variant: p50 ms}."""
    import torch

    import compress.evaluate.system as system
    from compress.evaluate.timing import exclusive_timing
    from compress.export import load_export

    if not lock:  # before issue 18: no lock, no fixed threads
        system.exclusive_timing = lambda threads=None: contextlib.nullcontext(torch.get_num_threads())
    else:
        system.exclusive_timing = exclusive_timing
    example = torch.randn(1, 784)

    def measure(name: str) -> tuple[str, float]:
        model = load_export(paths[name])
        out = system.system_metrics(model, example, warmup=warmup, iters=iters, memory=False)
        return name, out["latency_p50_ms"]

    with ThreadPoolExecutor(len(paths)) as pool:
        return dict(pool.map(measure, paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(one_run(spec["paths"], args.iters, args.warmup, spec["lock"])))
        return
    from compress.evaluate.timing import host_context

    paths = export_variants(Path(tempfile.mkdtemp(prefix="shrinkwrap-timing-")))
    env = {**os.environ, "SHRINKWRAP_TIMING_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    results: dict[str, list[dict[str, float]]] = {}
    for arm, lock in (("protocol", True), ("no-lock", False)):
        for _ in range(2):
            child = json.dumps({"paths": paths, "lock": lock})
            out = subprocess.run([sys.executable, __file__, "--iters", str(args.iters), "--warmup", str(args.warmup),
                                  "--child", child], env=env, capture_output=True, text=True, check=True)
            results.setdefault(arm, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(arm, results[arm][-1], flush=True)
    ctx = host_context(args.threads)
    lines = ["# Timing repeatability: the same variant measured in two runs", "",
             f"`bench/timing_repeat.py --iters {args.iters} --warmup {args.warmup} --threads {args.threads}` under "
             f"`flock /tmp/shrinkwrap-cpu.lock`. Host: {ctx['cpu_model']}, {ctx['cpu_count']} CPUs, torch "
             f"threads {args.threads}, load average at the end {ctx['load_avg_1m']:.2f}. MLP 784-128-10 "
             "(the demo student), batch 1, three variants evaluated concurrently in a 3-thread pool as the "
             "flow does; each run is a fresh process.", "",
             "| arm | variant | p50 run 1 (ms) | p50 run 2 (ms) | run 2 / run 1 | within 20 % |",
             "|---|---|---:|---:|---:|---|"]
    for arm, (first, second) in results.items():
        for name in VARIANTS:
            ratio = second[name] / first[name]
            lines.append(f"| {arm} | {name} | {first[name]:.4f} | {second[name]:.4f} | {ratio:.2f} | "
                         f"{'yes' if abs(ratio - 1) <= 0.2 else 'no'} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "timing_repeat.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
