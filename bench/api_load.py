"""Loopback load test of the admin API: GET version list on a model with 10k versions, and metric reads.

Starts `api.main.serve` (uvicorn, one worker) as a subprocess on a free 127.0.0.1 port over a fresh
registry (SQLite by default, or --db-url), seeds it in bulk, then drives an open-loop load at --rate
requests/s for at most --seconds per scenario (and at most --max-requests), authenticated with a read
token, and reports throughput and latency percentiles. Goal from issue 8: p99 <= 50 ms at 200 req/s on
2 cores. Loopback only; nothing leaves the machine.

    .venv/bin/python bench/api_load.py                 # SQLite, 200 req/s, 10 s per scenario
    .venv/bin/python bench/api_load.py --db-url postgresql+psycopg://postgres@127.0.0.1:5432/test_x
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry import repository as repo  # noqa: E402
from registry.models import Metric, ModelVersion, utcnow  # noqa: E402
from registry.session import init_db, make_engine, session_scope  # noqa: E402
from registry.store import ArtifactStore  # noqa: E402

MODEL = "bench-model"
METRICS_PER_VERSION = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(url: str, root: Path, versions: int) -> str:
    """One model with `versions` versions (bulk insert), 5 metrics each; returns a read token."""
    engine = make_engine(url)
    store = ArtifactStore(root)
    with session_scope(engine) as s:
        model = repo.create_model(s, name=MODEL, description="load test")
        artifact = repo.register_blob(s, blob=store.put_bytes(b"weights" * 1000), kind="export", format="bin")
        now = utcnow()
        s.execute(insert(ModelVersion), [dict(model_id=model.id, version=v, status="ready", artifact_id=artifact.id,
                                              created_at=now) for v in range(1, versions + 1)])
        ids = [vid for (vid,) in s.execute(ModelVersion.__table__.select().with_only_columns(ModelVersion.id))]
        rng = random.Random(0)
        s.execute(insert(Metric), [dict(name=f"m{k}", value=rng.random(), version_id=vid, created_at=now)
                                   for vid in ids for k in range(METRICS_PER_VERSION)])
        _, token = repo.create_token(s, name="bench", scopes=["read"])
    engine.dispose()
    return token


def start_server(url: str, root: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "SHRINKWRAP_DATABASE_URL": url, "SHRINKWRAP_ARTIFACT_ROOT": str(root)}
    code = (f"from api.main import serve; "
            f"raise SystemExit(serve('127.0.0.1', {port}, log_level='warning', workers={workers}))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API server exited with {proc.returncode} before answering")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("API server did not answer /health within 60 s")


async def drive(base: str, token: str, paths, *, rate: float, seconds: float, max_requests: int) -> dict:
    """Open loop: request i is sent at t0 + i/rate whatever earlier ones are doing (no coordinated omission:
    latency counts from the scheduled send time)."""
    n = min(max_requests, int(rate * seconds))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=10) as client:
        await client.get(paths(0))  # warm up the connection and the server's caches
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal errors
            scheduled = t0 + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                r = await client.get(paths(i))
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - scheduled) * 1000)

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": n, "errors": errors, "throughput": n / elapsed, "p50": q[49], "p99": q[98],
            "max": latencies[-1], "latencies": latencies}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default=None, help="an EMPTY database (default: a temporary SQLite file)")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="target requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each scenario")
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="uvicorn worker counts to compare (more than 1 only helps PostgreSQL)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "api_load.md"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sw-api-load-") as tmp:
        url = args.db_url or f"sqlite:///{Path(tmp) / 'registry.db'}"
        init_db(url)
        t = time.perf_counter()
        token = seed(url, Path(tmp) / "artifacts", args.versions)
        print(f"seeded {args.versions} versions and {args.versions * METRICS_PER_VERSION} metrics "
              f"in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        rng = random.Random(1)
        v = args.versions
        scenarios = {
            "GET /models/{m}/versions (first page, limit=100)": lambda i: f"/models/{MODEL}/versions?limit=100",
            "GET /models/{m}/versions (random page, limit=100)":
                lambda i: f"/models/{MODEL}/versions?limit=100&offset={rng.randrange(0, max(1, v - 100))}",
            "GET /models/{m}/versions/{v}/metrics (random v)":
                lambda i: f"/models/{MODEL}/versions/{rng.randrange(1, v + 1)}/metrics",
        }
        results = {}
        for workers in args.workers:
            port = free_port()
            proc = start_server(url, Path(tmp) / "artifacts", port, workers)
            try:
                for name, paths in scenarios.items():
                    results[(workers, name)] = asyncio.run(drive(
                        f"http://127.0.0.1:{port}", token, paths, rate=args.rate, seconds=args.seconds,
                        max_requests=args.max_requests))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    backend = url.split(":", 1)[0]
    lines = ["# API load (bench/api_load.py)", "",
             f"{args.versions} versions, {METRICS_PER_VERSION} metrics each; uvicorn on 127.0.0.1; "
             f"{backend}; open-loop {args.rate:g} req/s target for {args.seconds:g} s per scenario; read token; "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average at end "
             f"{os.getloadavg()[0]:.1f} (machine shared with other jobs: latencies include their noise).", "",
             "| workers | scenario | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | max (ms) "
             "| p99 <= 50 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (workers, name), r in results.items():
        lines.append(f"| {workers} | {name} | {r['requests']} | {r['errors']} | {r['throughput']:.0f} | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.1f} | {'yes' if r['p99'] <= 50 else 'no'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    _plot(results, ROOT / "bench" / "out" / "api_load.png")
    return 0


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (workers, name), r in results.items():
        lat = r["latencies"]
        ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=f"{workers}w {name}")
    ax.axvline(50, color="grey", linestyle="--", label="50 ms goal")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
