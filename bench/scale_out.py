"""Scale-out benchmark: several Prefect workers for several runs, a Dask cluster for one run's variants.

Part `runs`: 4 mnist recipe runs (distinct seeds, so none reuses another's cache) POSTed at once to
`scripts/stack-local up --workers N`, each worker taking one flow run at a time; wall time from the first
POST until every run is completed, N=1 then N=2, each on a fresh stack (new databases and artifact store).
Part `fanout`: one mnist recipe with 8 quantization variants; the quantize/evaluate/export fan-out (first
quantize start to last export end, from the registry's StageRun rows) in one process (Prefect's thread
runner) vs on a 2-worker Dask cluster (`dask scheduler` + 2 `dask worker` processes on loopback, joined
through SHRINKWRAP_DASK_ADDRESS). The shared stages (dataset ... prune) run once beforehand (warm-up).
Goal (issue 16): 2 workers <= 0.65x the 1-worker / single-process wall time, for both parts.

Every process runs torch with 1 thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)); run it under the
CPU lock. With 2 cores, 2 workers bound the speed-up at 2x (0.5x), less whatever else the machine runs.

    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/scale_out.py [--part runs|fanout|both]

Writes bench/results/scale_out.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "flows")]
os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                  DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
PG = os.environ.get("PG_URL", "postgres@127.0.0.1:5432")
FANOUT_VARIANTS = [("none", {}), ("int8", {}), ("int8", {"threshold": 0.0}), ("nf4", {}),
                   ("nf4", {"double_quant": True}), ("fp4", {}), ("fp4", {"double_quant": True}),
                   ("nf4", {"compute_dtype": "bfloat16"})]


def recipe(args, *, seed: int = 0, name: str = "mnist-scale", variants: list[dict] | None = None) -> dict:
    from flows_testing import tiny_mnist

    data = tiny_mnist(name=name, seed=seed, dataset={"n_train": args.n_train, "n_test": args.n_test},
                      evaluate={"latency_iters": args.latency_iters, "warmup": 2})
    if variants is not None:
        data["quantize"] = {"variants": variants}
    return data


# -- part 1: N Prefect workers ---------------------------------------------------------------------
def runs_on_stack(args, workers: int, tmp: Path) -> dict:
    import httpx
    from scale_testing import admin_token, flow_runs, local_stack, submit, wait_runs

    with local_stack(tmp / f"w{workers}", workers, show_logs=False) as (env, api), \
            httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin_token(env)}"}, timeout=30) as c:
        start = time.perf_counter()
        submitted = [submit(c, recipe(args, seed=seed)) for seed in range(args.runs)]
        runs = wait_runs(c, [rid for rid, _ in submitted], timeout_s=1800)
        wall = time.perf_counter() - start
        by_worker = [info["worker"] for info in flow_runs([fid for _, fid in submitted], env).values()]
    statuses = sorted({r["status"] for r in runs.values()})
    return {"workers": workers, "wall_s": wall, "statuses": statuses,
            "per_worker": {w: by_worker.count(w) for w in sorted(set(by_worker), key=str)}}


# -- part 2: the variant fan-out on Dask -----------------------------------------------------------
def create_database() -> str:
    from sqlalchemy import create_engine, text

    name = f"sw_bench_scale_{uuid.uuid4().hex[:8]}"
    engine = create_engine(f"postgresql+psycopg://{PG}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"postgresql+psycopg://{PG}/{name}"


def drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"postgresql+psycopg://{PG}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


def fanout_seconds(run_id: int) -> float:
    from registry import repository as repo
    from registry.session import session_scope

    with session_scope() as s:
        rows = [st for st in repo.list_stages(s, run_id=run_id) if st.name.split("[")[0] in
                ("quantize", "evaluate", "export")]
        assert rows and all(st.status == "completed" for st in rows), [(st.name, st.status) for st in rows]
        return (max(st.finished_at for st in rows) - min(st.started_at for st in rows)).total_seconds()


def timed_run(args, prefix: str, flow_) -> tuple[float, float, dict]:
    from flows.recipe import Recipe

    variants = [{"name": f"{prefix}-{i}-{t}", "technique": t, **({"options": o} if o else {})}
                for i, (t, o) in enumerate(FANOUT_VARIANTS[:args.variants])]
    start = time.perf_counter()
    summary = flow_(Recipe.model_validate(recipe(args, name="mnist-fanout", variants=variants)))
    return time.perf_counter() - start, fanout_seconds(summary["run_id"]), summary


def fanout(args, tmp: Path) -> list[dict]:
    from distributed import Client
    from prefect.testing.utilities import prefect_test_harness
    from scale_testing import dask_cluster, worker_env

    url = create_database()
    os.environ.update(SHRINKWRAP_DATABASE_URL=url, SHRINKWRAP_ARTIFACT_ROOT=str(tmp / "artifacts"),
                      SHRINKWRAP_EXPORT_DIR=str(tmp / "exports"), SHRINKWRAP_HOME=str(tmp / "home"))
    os.environ.pop("SHRINKWRAP_TASK_RUNNER", None)
    rows = []
    try:
        from flows.flow import compress_model, with_task_runner
        from registry.session import dispose_engines, init_db

        init_db(url)
        with prefect_test_harness(server_startup_timeout=180):
            timed_run(args, "warm", compress_model)  # the shared stages + imports, not measured
            wall, fan, _ = timed_run(args, "threads", compress_model)
            rows.append({"config": "1 process (thread runner)", "wall_s": wall, "fanout_s": fan})
            with dask_cluster(2, worker_env(), tmp / "dask") as address, Client(address) as client:
                client.run(lambda: __import__("flows.stages") and None)  # import torch & co. on each worker
                wall, fan, _ = timed_run(args, "dask", with_task_runner(dask_address=address))
                rows.append({"config": "2 Dask workers", "wall_s": wall, "fanout_s": fan})
        dispose_engines()
    finally:
        drop_database(url)
    return rows


def write(args, runs: list[dict], fan: list[dict], elapsed: float) -> Path:
    import torch

    lines = ["# Scale-out: Prefect workers and a Dask cluster (bench/scale_out.py)", "",
             f"Machine: {os.cpu_count()} cores shared with other agents (run under the CPU lock), "
             f"{platform.python_version()}, torch {torch.__version__}, torch threads per process = 1 "
             f"(OMP_NUM_THREADS=1). 2 workers on 2 cores bound the speed-up at 2x (ratio >= 0.5).",
             f"Recipe: recipes/mnist.yaml scaled down: n_train={args.n_train}, n_test={args.n_test}, "
             f"1 distill epoch, 1 pruning round, latency_iters={args.latency_iters}. One measurement per "
             f"configuration, side by side in one run of {elapsed:.0f} s. Goal: ratio <= 0.65.", ""]
    if runs:
        base = runs[0]["wall_s"]
        lines += [f"## {args.runs} recipe runs POSTed at once to `scripts/stack-local up --workers N`", "",
                  "Each worker takes one flow run at a time (WORKER_LIMIT=1, polls every 2 s); wall = first "
                  "POST to last run completed; every run on a fresh stack (cold cache).", "",
                  "| workers | wall s | ratio | run statuses | runs per worker |", "|---|---|---|---|---|"]
        lines += [f"| {r['workers']} | {r['wall_s']:.1f} | {r['wall_s'] / base:.2f} | {', '.join(r['statuses'])} | "
                  f"{', '.join(f'{w}: {n}' for w, n in r['per_worker'].items())} |" for r in runs]
        lines.append("")
    if fan:
        base = fan[0]["fanout_s"]
        lines += [f"## One run, {args.variants} quantization variants: quantize/evaluate/export fan-out", "",
                  "fan-out = first quantize start to last export end (registry StageRun rows); whole run = "
                  "the flow call (shared stages cached by a warm-up run; Dask cluster start not counted).", "",
                  "| runner | fan-out s | ratio | whole run s |", "|---|---|---|---|"]
        lines += [f"| {r['config']} | {r['fanout_s']:.1f} | {r['fanout_s'] / base:.2f} | {r['wall_s']:.1f} |"
                  for r in fan]
        lines += ["", "Variants: " + ", ".join(f"{t}{o or ''}" for t, o in FANOUT_VARIANTS[:args.variants]), ""]
    lines += ["## Reading", "",
              "- Runs: the stack's Prefect server, API and worker polling share the same 2 cores as the runs, and "
              "every flow-run process pays its own start-up (imports, Prefect engine, registry connection); both "
              "cap the gain below the 2x bound.",
              "- Fan-out: a tiny MLP's quantize/evaluate/export take tenths of a second each, so a Dask task "
              "(parameters pickled to the scheduler and a worker, a Prefect task run opened from the worker, "
              "torch/bitsandbytes first use in that process) costs more than the work. Dask pays off when one "
              "variant's stages take seconds or more (LLM variants, long latency loops), not on MNIST.", ""]
    out = ROOT / "bench" / "results" / "scale_out.md"
    out.write_text("\n".join(lines))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["runs", "fanout", "both"], default="both")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--variants", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--latency-iters", type=int, default=50)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sw-scale-") as tmp:
        fan = fanout(args, Path(tmp) / "fanout") if args.part in ("fanout", "both") else []
        runs = ([runs_on_stack(args, n, Path(tmp)) for n in (1, 2)] if args.part in ("runs", "both") else [])
    out = write(args, runs, fan, time.perf_counter() - started)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
