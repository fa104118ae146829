"""Prometheus text exposition (format 0.0.4) of the model server: queue depth, a batch-size histogram,
request latency and forward-pass time histograms, counters of requests by route and status, rejected
(queue full) and dropped (timed out / disconnected before their batch) requests, and the served version.
Hand-written (about 60 lines) rather than a new dependency; one process's numbers (with --workers N,
each worker exposes its own)."""

from __future__ import annotations

import bisect
import collections
import dataclasses

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclasses.dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = dataclasses.field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self):
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        tail = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{tail} {self.total:.6f}", f"{name}_count{tail} {self.n}"]


@dataclasses.dataclass
class ServingMetrics:
    queue_depth: int = 0
    rejected: int = 0
    dropped: int = 0
    reloads: int = 0
    running: int = 0  # forward passes in progress (0 or 1)
    batch_size: Histogram = dataclasses.field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    batch_seconds: Histogram = dataclasses.field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    latency: dict[str, Histogram] = dataclasses.field(default_factory=dict)
    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        self.latency.setdefault(route, Histogram(SECONDS_BUCKETS)).observe(seconds)

    def render(self, *, model: str, version: int | None) -> str:
        p = "shrinkwrap_serving"
        lines = [f"# TYPE {p}_queue_depth gauge", f"{p}_queue_depth {self.queue_depth}",
                 f"# TYPE {p}_rejected_total counter", f"{p}_rejected_total {self.rejected}",
                 f"# TYPE {p}_dropped_total counter", f"{p}_dropped_total {self.dropped}",
                 f"# TYPE {p}_reloads_total counter", f"{p}_reloads_total {self.reloads}",
                 f"# TYPE {p}_batch_running gauge", f"{p}_batch_running {self.running}",
                 f"# TYPE {p}_model_version gauge",
                 f'{p}_model_version{{model="{model}"}} {-1 if version is None else version}',
                 f"# TYPE {p}_batch_size histogram", *self.batch_size.lines(f"{p}_batch_size"),
                 f"# TYPE {p}_batch_seconds histogram", *self.batch_seconds.lines(f"{p}_batch_seconds"),
                 f"# TYPE {p}_request_seconds histogram"]
        for route, hist in sorted(self.latency.items()):
            lines += hist.lines(f"{p}_request_seconds", f'route="{route}"')
        lines.append(f"# TYPE {p}_requests_total counter")
        lines += [f'{p}_requests_total{{route="{route}",status="{status}"}} {n}'
                  for (route, status), n in sorted(self.requests.items())]
        return "\n".join(lines) + "\n"
