"""The timing protocol: exclusive timing phases, fixed torch threads, and the host context they ran in.

Why: variants are evaluated concurrently in the flow's thread pool, so without a protocol every latency
carries the load of its neighbours (the demo's nf4 p50 read 5.27 ms under load and 1.02 ms alone).

- `exclusive_timing(threads=None)`: a process-wide lock every timing phase takes (`latency`, LM
  generation speed), so concurrent evaluations serialise their timing and run the rest in parallel.
  Inside it torch runs on a fixed number of threads (`timing_threads()`: SHRINKWRAP_TIMING_THREADS, else
  min(4, CPUs)); the previous setting is restored on exit. Re-entrant within one thread.
- `host_context()`: CPU model, CPU count, timing threads, load average at the start; its numeric fields
  are metrics (`host_metrics`), `fingerprint` is the string to compare runs by (like-for-like only).
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

TIMING_LOCK = threading.RLock()
THREADS_ENV = "SHRINKWRAP_TIMING_THREADS"


def timing_threads() -> int:
    """Torch threads for timing: SHRINKWRAP_TIMING_THREADS, else min(4, usable CPUs)."""
    raw = os.environ.get(THREADS_ENV)
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {raw!r}; unset it for the default")
        return int(raw)
    return max(1, min(4, _cpu_count()))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def exclusive_timing(threads: int | None = None) -> Iterator[int]:
    """Hold the process-wide timing lock with torch on `threads` threads; yields the thread count.

        with exclusive_timing() as n:
            stats = latency(fn)      # latency() takes the lock itself; nesting is fine
    """
    threads = threads or timing_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    with TIMING_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            torch.set_num_threads(before)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else platform.processor(), else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_context(threads: int | None = None) -> dict[str, Any]:
    """Where a measurement ran: cpu_model, cpu_count, threads (torch timing threads), load_avg_1m/5m/15m
    at call time, device (cuda name or "cpu"), torch version and a `fingerprint` of the like-for-like
    fields (cpu model, cpu count, threads, device, torch): equal fingerprints, comparable latencies."""
    threads = threads or timing_threads()
    try:
        load1, load5, load15 = os.getloadavg()
    except OSError:
        load1 = load5 = load15 = float("nan")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    ctx: dict[str, Any] = {"cpu_model": cpu_model(), "cpu_count": _cpu_count(), "threads": threads,
                           "load_avg_1m": load1, "load_avg_5m": load5, "load_avg_15m": load15,
                           "device": device, "torch": torch.__version__}
    like = "|".join(str(ctx[k]) for k in ("cpu_model", "cpu_count", "threads", "device", "torch"))
    ctx["fingerprint"] = hashlib.sha256(like.encode()).hexdigest()[:16]
    return ctx


def host_metrics(ctx: dict[str, Any] | None = None) -> dict[str, float]:
    """The numeric part of `host_context()` as metrics (threads, cpu_count, load averages)."""
    ctx = ctx or host_context()
    keys = ("threads", "cpu_count", "load_avg_1m", "load_avg_5m", "load_avg_15m")
    return {k: float(ctx[k]) for k in keys if ctx.get(k) == ctx.get(k)}  # NaN (no getloadavg) left out
