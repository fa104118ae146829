"""Loopback load test of the admin API: GET version list on a model with 10k versions, and metric reads.

Starts `api.main.serve` (uvicorn, --workers processes) as a subprocess on a free 127.0.0.1 port over a
fresh registry (SQLite by default, or an empty --db-url database, which gets VACUUM ANALYZE after the bulk
seed as autovacuum would give it), then drives an open-loop load (aiohttp) at --rate requests/s: --warmup
seconds not counted, then at most --seconds (and --max-requests) per scenario, authenticated with a read
token. Reports throughput, latency percentiles, the load generator's own lag and the API server's CPU
time per request (its processes only, not PostgreSQL's). Goal from issue 8: p99 <= 50 ms at 200 req/s
on 2 cores; the load generator (and PostgreSQL) share those cores. Loopback only; nothing leaves the machine.

    .venv/bin/python bench/api_load.py --seconds 15 --workers 1 2      # SQLite
    .venv/bin/python bench/api_load.py --seconds 15 --workers 1 2 --out bench/results/api_load_postgres.md \\
        --db-url postgresql+psycopg://postgres@127.0.0.1:5432/api_load   # an empty database
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

import aiohttp
import httpx
import psutil
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry import repository as repo  # noqa: E402
from registry.models import Metric, ModelVersion, utcnow  # noqa: E402
from registry.session import init_db, make_engine, session_scope  # noqa: E402
from registry.store import ArtifactStore  # noqa: E402

MODEL = "bench-model"
MAX_CONNECTIONS = 64  # keep-alive connections of the load generator (more only when requests queue)
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
    if engine.dialect.name == "postgresql":
        # A bulk load leaves PostgreSQL's planner without statistics (it then sorts all 10k versions for
        # every page, 4 ms instead of 1); autovacuum fixes that within a minute on a live registry.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return token


def start_server(url: str, root: Path, port: int, workers: int, cwd: Path = ROOT) -> subprocess.Popen:
    """`api.main.serve` of the checkout at `cwd` (default: this one), once it answers /health."""
    env = {**os.environ, "SHRINKWRAP_DATABASE_URL": url, "SHRINKWRAP_ARTIFACT_ROOT": str(root)}
    code = (f"from api.main import serve; "
            f"raise SystemExit(serve('127.0.0.1', {port}, log_level='warning', workers={workers}))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd)
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


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server process and its uvicorn worker processes."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


async def drive(base: str, token: str, paths, *, rate: float, seconds: float, max_requests: int,
                warmup: float, server_pid: int) -> dict:
    """Open loop: request i is sent at t0 + i/rate whatever earlier ones are doing, and its latency counts
    from that scheduled time (no coordinated omission: a stalled server cannot hide its queue).

    `warmup` seconds at the same rate come first and are not counted: they open the keep-alive connections
    and let the server's threads, pools and statement caches fill. The client measures its own lag too
    (how late each request left versus its schedule): a large `client lag p99` means the load generator,
    not the server, limited the run. Tasks are created at their send time, not all up front, and the
    client's start-up heap is frozen out of the garbage collector, so neither stalls the schedule."""
    n = min(max_requests, int(rate * seconds))
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {token}"}, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as client:
        await _open_loop(client, paths, rate=rate, n=int(rate * warmup))
        gc.collect()
        gc.freeze()
        cpu0, t0 = server_cpu_seconds(server_pid), time.perf_counter()
        latencies, lags, errors = await _open_loop(client, paths, rate=rate, n=n)
        elapsed, cpu = time.perf_counter() - t0, server_cpu_seconds(server_pid) - cpu0
        gc.unfreeze()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": n, "errors": errors, "throughput": n / elapsed, "p50": q[49], "p99": q[98],
            "max": latencies[-1], "lag_p99": statistics.quantiles(lags, n=100, method="inclusive")[98],
            "server_cpu_ms": 1000 * cpu / n,
            "latencies": latencies}


async def saturate(base: str, token: str, path: str, seconds: float, pid: int, connections: int = 32) -> dict:
    """Closed loop: `connections` clients each send the next request as soon as the last one is answered, for
    `seconds` (after a short warm-up): the requests/s one server answers flat out, and its CPU per request.
    The load generator shares the machine's cores, so on 2 cores this is a floor."""
    done = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {token}"},
                                     connector=aiohttp.TCPConnector(limit=connections)) as client:
        async def worker():
            nonlocal done
            while time.perf_counter() < stop:
                async with client.get(path) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1
        await asyncio.gather(*(worker() for _ in range(4)))  # warm the connections
        done = 0
        stop = time.perf_counter() + seconds
        cpu0, t0 = server_cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed, cpu = time.perf_counter() - t0, server_cpu_seconds(pid) - cpu0
    return {"req_per_s": done / elapsed, "cpu_ms": 1000 * cpu / max(1, done), "server_cpu_share": cpu / elapsed}


async def _open_loop(client: aiohttp.ClientSession, paths, *, rate: float, n: int) -> tuple[list, list, int]:
    latencies: list[float] = []
    lags: list[float] = []
    errors = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        lags.append((time.perf_counter() - scheduled) * 1000)
        try:
            async with client.get(paths(i)) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
        latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = set()
    t0 = time.perf_counter()
    for i in range(n):
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)
    return latencies, lags, errors


def make_scenarios(versions: int, seed: int = 1) -> dict:
    """{name: paths(i) -> the i-th request's path}: the first version page, a random page, a random version's
    metrics, over `versions` versions (random choices seeded)."""
    rng = random.Random(seed)
    return {
        "GET /models/{m}/versions (first page, limit=100)": lambda i: f"/models/{MODEL}/versions?limit=100",
        "GET /models/{m}/versions (random page, limit=100)":
            lambda i: f"/models/{MODEL}/versions?limit=100&offset={rng.randrange(0, max(1, versions - 100))}",
        "GET /models/{m}/versions/{v}/metrics (random v)":
            lambda i: f"/models/{MODEL}/versions/{rng.randrange(1, versions + 1)}/metrics",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", default=None, help="an EMPTY database (default: a temporary SQLite file)")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="target requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each scenario")
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at --rate before each measured run")
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
        scenarios = make_scenarios(args.versions)
        results = {}
        for workers in args.workers:
            port = free_port()
            proc = start_server(url, Path(tmp) / "artifacts", port, workers)
            try:
                for name, paths in scenarios.items():
                    results[(workers, name)] = asyncio.run(drive(
                        f"http://127.0.0.1:{port}", token, paths, rate=args.rate, seconds=args.seconds,
                        max_requests=args.max_requests, warmup=args.warmup, server_pid=proc.pid))
                    results[(workers, name)]["saturation"] = asyncio.run(saturate(
                        f"http://127.0.0.1:{port}", token, paths(0), min(args.seconds, 5.0), proc.pid))["req_per_s"]
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    backend = url.split(":", 1)[0]
    lines = ["# API load (bench/api_load.py)", "",
             f"{args.versions} versions, {METRICS_PER_VERSION} metrics each; uvicorn on 127.0.0.1; "
             f"{backend}; open-loop {args.rate:g} req/s target for {args.seconds:g} s per scenario after "
             f"{args.warmup:g} s of warm-up at the same rate; read token; load generator in the same machine; "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average at end "
             f"{os.getloadavg()[0]:.1f}. Saturation: a closed loop of 32 connections on the scenario's first path for "
             f"{min(args.seconds, 5.0):g} s, requests answered per second (the load generator shares the cores).", "",
             "| workers | scenario | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | max (ms) "
             "| client lag p99 (ms) | server CPU (ms/request) | saturation (req/s) | p99 <= 50 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (workers, name), r in results.items():
        lines.append(f"| {workers} | {name} | {r['requests']} | {r['errors']} | {r['throughput']:.0f} | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.1f} | {r['lag_p99']:.1f} | {r['server_cpu_ms']:.2f} | "
                     f"{r['saturation']:.0f} | "
                     f"{'yes' if r['p99'] <= 50 else 'no'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    _plot(results, ROOT / "bench" / "out" / f"{Path(args.out).stem}.png")
    return 0


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (workers, name), r in results.items():
        lat = r["latencies"]
        ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=f"{workers}w {name}")
    ax.axvline(50, color="grey", linestyle="--", label="50 ms goal")
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
             if t <= max(100.0, max(r["max"] for r in results.values()))]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
