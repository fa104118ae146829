"""Resume benchmark: kill -9 the `shrinkwrap run` process inside each stage, rerun, count what is recomputed.

For every stage S: a fresh registry (SQLite) and artifact store; run the recipe with SHRINKWRAP_FAULT=S:kill
(the process SIGKILLs itself inside S, after S's StageRun row is committed as running); then rerun the
same recipe normally and read the StageRun rows of both runs. Goal: every stage that completed before the
kill is `cached` in the rerun (redone = 0); only the killed stage and the stages after it run.

    .venv/bin/python bench/resume.py [--recipe recipes/mnist.yaml] [--n-train 2000] [--epochs 1]

One Prefect server is started for the whole benchmark (so each run skips the temporary-server start).
Writes bench/results/flows_resume.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STAGES = ["dataset", "teacher", "teacher_data", "distill", "prune", "quantize[int8]", "evaluate[int8]",
          "export[int8]", "register"]


def small_recipe(path: Path, n_train: int, epochs: int, out: Path) -> Path:
    data = yaml.safe_load(path.read_text())
    data["dataset"].update(n_train=n_train, n_test=min(2000, n_train))
    data["distill"].update(epochs=epochs)
    data["prune"].update(rounds=1, epochs=epochs)
    data["evaluate"].update(latency_iters=5, warmup=1)
    out.write_text(yaml.safe_dump(data))
    return out


def stage_rows(home: Path) -> list[list[tuple[str, str]]]:
    code = ("from registry.session import session_scope; from registry import repository as r\n"
            "with session_scope() as s:\n"
            "    runs, _ = r.list_runs(s, limit=10)\n"
            "    for run in sorted(runs, key=lambda x: x.id):\n"
            "        print('|'.join(f'{st.name}={st.status}' for st in r.list_stages(s, run_id=run.id)))\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SHRINKWRAP_HOME": str(home)},
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return [[tuple(item.split("=")) for item in line.split("|") if item] for line in out.splitlines()]


def run(recipe: Path, home: Path, fault: str | None) -> tuple[int, float]:
    env = {**os.environ, "SHRINKWRAP_HOME": str(home)}
    env.pop("SHRINKWRAP_FAULT", None)
    if fault:
        env["SHRINKWRAP_FAULT"] = fault
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "shrinkwrap", "run", str(recipe)], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.returncode, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "mnist.yaml")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--stages", nargs="*", default=STAGES)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    work = Path(tempfile.mkdtemp(prefix="shrinkwrap-resume-"))
    recipe = small_recipe(args.recipe, args.n_train, args.epochs, work / "recipe.yaml")
    rows = []
    with prefect_test_harness(server_startup_timeout=180):  # sets PREFECT_API_URL for the child runs
        from prefect.settings import PREFECT_API_URL

        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        for stage in args.stages:
            home = work / stage.replace("[", "-").rstrip("]")
            rc_kill, t_kill = run(recipe, home, f"{stage}:kill")
            rc, t_rerun = run(recipe, home, None)
            runs = stage_rows(home)
            killed, rerun = dict(runs[0]), dict(runs[-1])
            done_before = {n for n, st in killed.items() if st == "completed"}
            computed = {n for n, st in rerun.items() if st == "completed"}
            redone = sorted(done_before & computed)
            rows.append((stage, rc_kill, killed.get(stage), len(done_before), sum(st == "cached" for st in rerun.values()),
                         len(computed), ", ".join(redone) or "-", stage in computed, rc, t_rerun))
            print(rows[-1], flush=True)
    head = ("| killed in | kill rc | killed stage row | completed before kill | rerun cached | rerun computed "
            "| redone after completing (goal: none) | killed stage rerun | rerun rc | rerun s |")
    lines = [head, "|---|---:|---|---:|---:|---:|---|---|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {'yes' if r[7] else 'no'} | {r[8]} "
              f"| {r[9]:.1f} |" for r in rows]
    table = "\n".join(lines)
    ok = all(r[6] == "-" and r[7] and r[8] == 0 for r in rows)
    text = (f"# Resume after kill -9 in each stage\n\nRecipe: {args.recipe.name} with n_train={args.n_train}, "
            f"epochs={args.epochs}, 1 pruning round. Each row: fresh registry, run killed by SIGKILL inside "
            f"the stage, then rerun.\n\n{table}\n\nGoal met (nothing completed is redone, the killed stage "
            f"reruns, reruns succeed): **{'yes' if ok else 'no'}**\n")
    print(text)
    out = ROOT / "bench" / "results" / "flows_resume.md"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
