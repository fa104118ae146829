"""Registry benchmark: SQLite vs PostgreSQL on the registry's hot paths.

    .venv/bin/python bench/registry_bench.py [--metrics 100000] [--versions 10000] [--depth 10] [--pg-admin URL]

- insert 100k metrics in batches of 1,000 (`log_metrics`, one transaction per batch)
- list versions of a model with 10k versions (first page, last page, total count), latest version,
  the Pareto front over 10k versions
- lineage of a 10-deep artifact chain (`artifact_lineage`)
- allocate 200 version numbers one transaction each (`create_version`)

Prints a markdown table, writes it to bench/results/registry.md and a bar chart to bench/out/registry.png.
Both databases are fresh (SQLite file in a temp dir; a throwaway PostgreSQL database, dropped at the end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import registry.repository as repo  # noqa: E402
from registry.models import Artifact, ArtifactEdge, Metric, ModelVersion  # noqa: E402
from registry.session import dispose_engines, init_db, make_engine, session_scope  # noqa: E402

PG_ADMIN = os.environ.get("SHRINKWRAP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def timed(fn, repeat: int = 1) -> float:
    """Median wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_suite(url: str, args) -> dict[str, float]:
    init_db(url)
    engine = make_engine(url)
    out: dict[str, float] = {}
    with session_scope(engine) as s:
        run = repo.create_run(s, recipe={"bench": True})
        run_id = run.id
        model_id = repo.create_model(s, name="bench").id
        repo.create_model(s, name="alloc")
    batch = 1000
    names = [f"m{i}" for i in range(batch)]

    def insert_metrics():
        for step in range(args.metrics // batch):
            with session_scope(engine) as s:
                repo.log_metrics(s, metrics=dict.fromkeys(names, 0.5), run_id=run_id, step=step)

    out[f"insert {args.metrics:,} metrics (batches of {batch:,})"] = timed(insert_metrics)
    out["list metrics of the run"] = timed(lambda: _in_scope(engine, lambda s: repo.list_metrics(s, run_id=run_id)))

    # 10k versions, set up with bulk inserts (the timed part is the reads)
    with session_scope(engine) as s:
        s.execute(insert(Artifact), [dict(kind="checkpoint", uri=f"mem://{i}", sha256=f"{i:064x}", bytes=1000 + i,
                                          format="pt", is_dir=False) for i in range(args.versions)])
        first = s.scalar(text("SELECT min(id) FROM artifacts"))
        s.execute(insert(ModelVersion), [dict(model_id=model_id, version=i + 1, status="ready",
                                              artifact_id=first + i) for i in range(args.versions)])
        s.execute(insert(Metric), [dict(name="accuracy", value=0.9 + (i % 97) / 1000, artifact_id=first + i)
                                   for i in range(args.versions)])
    with engine.connect() as conn:  # fresh planner statistics, as autovacuum would have after a bulk load
        conn.execute(text("ANALYZE"))
        conn.commit()
    last_offset = args.versions - 100
    out[f"list versions, first page of 100 (of {args.versions:,})"] = timed(
        lambda: _in_scope(engine, lambda s: repo.list_versions(s, model_name="bench", limit=100)), 20)
    out[f"list versions, last page (offset {last_offset:,})"] = timed(
        lambda: _in_scope(engine, lambda s: repo.list_versions(s, model_name="bench", limit=100,
                                                               offset=last_offset)), 20)
    out["latest version"] = timed(lambda: _in_scope(engine, lambda s: repo.get_latest_version(
        s, model_name="bench")), 20)
    out[f"Pareto front over {args.versions:,} versions"] = timed(lambda: _in_scope(engine, lambda s: repo.pareto_front(
        s, model_name="bench", x_metric="artifact_bytes", y_metric="accuracy")), 3)

    with session_scope(engine) as s:
        chain = [repo.register_blob(s, blob=_fake_blob(i), kind="checkpoint", format="pt")
                 for i in range(args.depth + 1)]
        s.execute(insert(ArtifactEdge), [dict(parent_id=a.id, child_id=b.id, stage="prune")
                                         for a, b in zip(chain, chain[1:], strict=False)])
        tip = chain[-1].id

    def lineage():
        got = _in_scope(engine, lambda s: repo.artifact_lineage(s, artifact_id=tip))
        assert len(got["nodes"]) == args.depth + 1, got

    out[f"lineage of a {args.depth}-deep chain"] = timed(lineage, 20)
    art_id = first

    def allocate():
        for _ in range(200):
            with session_scope(engine) as s:
                repo.create_version(s, model_name="alloc", artifact_id=art_id)

    out["create 200 versions (1 transaction each)"] = timed(allocate)
    engine.dispose()
    dispose_engines()
    return out


def _fake_blob(i: int):
    from registry.store import Blob

    return Blob(sha256=f"{10**9 + i:064x}", bytes=i, uri=f"mem://chain/{i}")


def _in_scope(engine, fn):
    with session_scope(engine) as s:
        return fn(s)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL URL used to create a throwaway database")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/registry.md")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = run_suite(f"sqlite:///{tmp}/bench.db", args)
    admin = create_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
    name = f"sw_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        pg_url = make_url(args.pg_admin).set(database=name).render_as_string(hide_password=False)
        results["PostgreSQL"] = run_suite(pg_url, args)
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    ops = list(results["SQLite"])
    lines = ["| operation | SQLite | PostgreSQL | PG / SQLite |", "|---|---:|---:|---:|"]
    for op in ops:
        a, b = results["SQLite"][op], results["PostgreSQL"][op]
        lines.append(f"| {op} | {fmt(a)} | {fmt(b)} | {b / a:.2f}x |")
    per_metric = {k: v / args.metrics * 1e6 for k, v in ((k, r[ops[0]]) for k, r in results.items())}
    table = "\n".join(lines)
    note = ("\n\nMetric insert throughput: " + ", ".join(f"{k} {1e6 / us:,.0f} rows/s" for k, us in per_metric.items())
            + f".\nMachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
            "(shared with other jobs); medians of repeated reads, single runs for the writes. "
            "SQLite: WAL, synchronous=NORMAL; PostgreSQL 15 on localhost, default fsync. "
            "ANALYZE runs after the bulk set-up of the 10k versions (without planner statistics PostgreSQL "
            "picks a nested loop and the Pareto query is ~10x slower).\n")
    print(table + note)
    if not args.no_write:
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        (ROOT / "bench" / "results" / "registry.md").write_text(
            "# Registry benchmark (`bench/registry_bench.py`)\n\n" + table + note)
        _plot(results, ops)
    return 0


def _plot(results: dict[str, dict[str, float]], ops: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.4
    for i, (backend, vals) in enumerate(results.items()):
        ax.barh([j + i * width for j in range(len(ops))], [vals[o] for o in ops], height=width, label=backend)
    ax.set_yticks([j + width / 2 for j in range(len(ops))], ops, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log)")
    ax.legend()
    fig.tight_layout()
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    fig.savefig(ROOT / "bench" / "out" / "registry.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
