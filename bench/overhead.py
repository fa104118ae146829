"""Orchestration overhead: the mnist recipe through Prefect + the registry vs the same compress/ calls in
one plain process (no Prefect, no SQL, no artifact store), measured in one run on the same machine.

Conditions are printed with the result: torch threads, load average at the start and end. The plain arm
runs before and after the flow (A-B-A); when the two plain runs differ by more than 10% the machine was
not steady and no headline is printed ("too noisy, rerun"). `--startup` also measures, on a fresh
SHRINKWRAP_HOME, how long `shrinkwrap run` takes from launch to a running flow: the first run (starts the
local Prefect server) and a second one right after (reuses it; goal <= 3 s).

Both arms do the same work: load MNIST, load the packaged teacher, label the transfer set, distil the
student, SAP-prune it, then per variant quantize, export, load the export back and evaluate it (accuracy,
agreement, KL, latency), and write the final export. The flow arm also hashes/stores every artifact,
records stages/metrics/lineage in SQLite, and registers versions. The Prefect server is started before
timing (its start-up is reported on its own row: `shrinkwrap run` pays it once per invocation).

    .venv/bin/python bench/overhead.py [--recipe recipes/mnist.yaml] [--n-train N] [--repeats 1]

Writes bench/results/flows_overhead.md. Goal: overhead <= 5% of the flow's wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def plain_pipeline(recipe, out: Path) -> dict[str, dict[str, float]]:
    """The recipe's compress/ calls in one process, no orchestration or bookkeeping."""
    from compress.data import load_dataset, transfer_set
    from compress.distill import distill, make_student, soft_labels
    from compress.evaluate.classification import accuracy, classification_metrics, predict_logits
    from compress.evaluate.system import system_metrics
    from compress.export import export_model, load_export
    from compress.prune.schedule import iterative_prune
    from compress.quantize import quantize_
    from compress.teacher import check_teacher, load_packaged_teacher

    data = load_dataset(recipe.dataset.name, path=recipe.dataset.path)
    if recipe.dataset.n_test:
        data.x_test, data.y_test = data.x_test[:recipe.dataset.n_test], data.y_test[:recipe.dataset.n_test]
    teacher = load_packaged_teacher(recipe.teacher.name)
    check_teacher(teacher, data)
    teacher_test = predict_logits(teacher, data.x_test)
    classification_metrics(teacher_test, data.y_test)
    n = recipe.dataset.n_train or len(data.x_train)
    ts = transfer_set(data, n, recipe.teacher_data.n_transfer or n, seed=recipe.seed)
    logits = soft_labels(teacher, ts.x_transfer, batch_size=recipe.teacher_data.batch_size)
    student = make_student(recipe.student.model_spec(data.input_shape, data.num_classes), seed=recipe.seed)
    distill(student, ts.x_transfer, ts.y_transfer, logits, recipe.distill.to_config(recipe.seed))
    classification_metrics(predict_logits(student, data.x_test), data.y_test, teacher_test)
    p = recipe.prune
    iterative_prune(student, ts.x_labelled, ts.y_labelled, config=p.to_config(), rounds=p.rounds, epochs=p.epochs,
                    rewind=p.rewind, eval_fn=lambda m: accuracy(predict_logits(m, data.x_test), data.y_test),
                    fit_kwargs={"batch_size": p.batch_size, "lr": p.lr, "seed": recipe.seed})
    pruned_state = {k: v.clone() for k, v in student.state_dict().items()}
    results = {}
    for v in recipe.quantize.variants:
        from compress.models import build_model, model_spec

        for final in (False, True):  # the intermediate checkpoint, then the shipped export
            model = build_model(model_spec(student))
            model.load_state_dict(pruned_state)
            cfg = v.to_config()
            model = quantize_(model, cfg) if cfg is not None else model
            dest = out / ("final" if final else "ckpt") / v.name
            export_model(model, dest, metadata={"variant": v.name}, sparse=recipe.export.sparse and cfg is None,
                         metrics=results.get(v.name), overwrite=True)
            if not final:
                loaded = load_export(dest)
                m = classification_metrics(predict_logits(loaded, data.x_test), data.y_test, teacher_test)
                m.update(system_metrics(loaded, data.x_test[:recipe.evaluate.latency_batch_size],
                                        iters=recipe.evaluate.latency_iters, warmup=recipe.evaluate.warmup, path=dest))
                results[v.name] = m
    return results


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def startup_times(work: Path) -> tuple[float, float]:
    """Launch -> flow running, for a cold and then a warm `shrinkwrap run` of a tiny recipe (fresh home)."""
    import datetime
    import subprocess

    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / "mnist.yaml").read_text())
    recipe.update(name="startup-probe", quantize={"variants": [{"name": "fp32", "technique": "none"}]})
    recipe["dataset"].update(n_train=200, n_test=100)
    recipe["distill"].update(epochs=1)
    recipe["prune"].update(rounds=1, epochs=0)
    path = work / "startup.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["SHRINKWRAP_HOME"] = str(work / "startup-home")
    times = []
    for _ in range(2):
        launched = datetime.datetime.now(datetime.UTC)
        subprocess.run([sys.executable, "-m", "shrinkwrap", "run", str(path)], env=env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        code = ("from registry.session import session_scope; from registry import repository as r\n"
                "with session_scope() as s:\n    print(r.list_runs(s, limit=1)[0][0].started_at.isoformat())")
        started = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout.strip()
        started_at = datetime.datetime.fromisoformat(started)  # SQLite gives it back naive (stored as UTC)
        if started_at.tzinfo is None:
            started_at = started_at.replace(tzinfo=datetime.UTC)
        times.append((started_at - launched).total_seconds())
    subprocess.run([sys.executable, "-m", "shrinkwrap", "server", "stop"], env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, check=False)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "mnist.yaml")
    parser.add_argument("--n-train", type=int, default=None, help="override dataset.n_train (None: the recipe's)")
    parser.add_argument("--startup", action="store_true", help="also time launch -> running flow, cold and warm")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both arms (1: no OpenMP spinning when other jobs share the CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="shrinkwrap-overhead-"))
    os.environ["SHRINKWRAP_HOME"] = str(work / "home")
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    from prefect.testing.utilities import prefect_test_harness

    from flows.flow import compress_model
    from flows.recipe import Recipe
    from registry.session import ensure_schema

    recipe = Recipe.from_yaml(args.recipe)
    if args.n_train:
        recipe = Recipe.model_validate({**recipe.model_dump(mode="json"),
                                        "dataset": {**recipe.dataset.model_dump(), "n_train": args.n_train}})
    ensure_schema()
    load_start = os.getloadavg()
    t_a, c_a = _timed(lambda: plain_pipeline(recipe, work / "plain-a"))  # A-B-A: plain, flow, plain
    t0 = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=180):
        t_server = time.perf_counter() - t0
        t1 = time.perf_counter()
        c1 = time.process_time()
        compress_model(recipe)
        t_flow, c_flow = time.perf_counter() - t1, time.process_time() - c1
    t_b, c_b = _timed(lambda: plain_pipeline(recipe, work / "plain-b"))
    t_plain, c_plain = (t_a + t_b) / 2, (c_a + c_b) / 2
    overhead = (t_flow - t_plain) / t_flow
    cpu_overhead = (c_flow - c_plain) / c_flow
    spread = abs(t_a - t_b) / min(t_a, t_b)
    load = os.getloadavg()
    rows = [("Prefect server start-up (test harness, before timing)", t_server, float("nan")),
            ("flow: Prefect + registry + artifact store", t_flow, c_flow),
            ("plain: same compress/ calls, one process (before the flow)", t_a, c_a),
            ("plain: same compress/ calls, one process (after the flow)", t_b, c_b),
            ("plain: mean of the two", t_plain, c_plain)]
    if args.startup:
        cold, warm = startup_times(work)
        rows += [("`shrinkwrap run` launch -> flow running, first run (starts the local server)", cold, float("nan")),
                 ("`shrinkwrap run` launch -> flow running, second run (reuses it; goal <= 3 s)", warm, float("nan"))]
    table = "\n".join(["| arm | wall s | CPU s (this process) |", "|---|---:|---:|",
                       *(f"| {name} | {w:.1f} | {c:.1f} |" for name, w, c in rows)])
    conditions = (f"torch threads {torch.get_num_threads()}; load average (1 min) {load_start[0]:.1f} at the start, "
                  f"{load[0]:.1f} at the end; {os.cpu_count()} CPUs; the two plain runs differ by "
                  f"{100 * spread:.1f}% of wall time")
    if spread > 0.10:
        headline = (f"**too noisy, rerun**: the plain runs before and after the flow differ by {100 * spread:.0f}% "
                    f"(> 10%), so the machine was not steady; no overhead figure is claimed from this run.")
    else:
        headline = (f"Overhead of the flow over the plain arm (mean of the two plain runs): "
                    f"**{100 * overhead:+.1f}% of wall time** and **{100 * cpu_overhead:+.1f}% of CPU time** "
                    f"(goal: at most 5% each).")
    text = (f"# Orchestration overhead ({args.recipe.name}, n_train={recipe.dataset.n_train or 'all'})\n\n{table}\n\n"
            f"{headline}\n\nConditions: {conditions}. Reproduce: `python bench/overhead.py"
            f"{' --startup' if args.startup else ''}`. CPU is this process's (the Prefect server's own process is "
            f"not counted); the flow runs the variant branches concurrently, the plain arm one after the other.\n")
    print(text)
    out = ROOT / "bench" / "results" / "flows_overhead.md"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
