"""Server CPU per request of the admin API, before and after a change, measured side by side: A-B-A-B...

Starts two API servers over one seeded registry (10k versions, 5 metrics each, as bench/api_load.py): arm A
from a git worktree of `--ref` (e.g. the commit before a change), arm B from this working tree, both with
this interpreter. Then, for `--rounds` rounds, drives each arm in turn, one scenario at a time, at the
same open-loop rate (`--seconds` per block after 1 s of warm-up) and reads the server process's CPU time
per request (user + system, its own process only; the load generator runs in this process, on the same
cores). Interleaving the arms block by block puts slow drift of the machine (other jobs, frequency) on
both alike. Reports the median over rounds per arm and scenario, the spread, and the B/A ratio, then the
saturation throughput of each arm: a closed loop of 32 connections for `--seconds`, requests answered per
second (the load generator shares the 2 cores, so this is a floor).

    .venv/bin/python bench/api_cpu_ab.py --ref 1f2224b --rounds 5 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import api_load  # noqa: E402

from registry.session import init_db  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git ref of arm A (arm B is this working tree)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--db-url", default=None, help="an EMPTY database (default: a temporary SQLite file)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "api_cpu_ab.md"))
    args = ap.parse_args()
    ref = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    scenarios = api_load.make_scenarios(args.versions)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sw-api-ab-") as tmp:
        worktree = Path(tmp) / "ref"
        arms = {f"A {ref}": worktree, f"B {head}{' + uncommitted changes' if dirty else ''}": ROOT}
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), args.ref], cwd=ROOT, check=True)
        procs = {}
        try:
            url = args.db_url or f"sqlite:///{Path(tmp) / 'registry.db'}"
            init_db(url)
            token = api_load.seed(url, Path(tmp) / "artifacts", args.versions)
            ports = {arm: api_load.free_port() for arm in arms}
            procs = {arm: api_load.start_server(url, Path(tmp) / "artifacts", ports[arm], 1, cwd=cwd)
                     for arm, cwd in arms.items()}
            cpu: dict[tuple[str, str], list[float]] = {(a, s): [] for a in arms for s in scenarios}
            for rnd in range(args.rounds):
                order = list(arms) if rnd % 2 == 0 else list(arms)[::-1]  # A B, then B A: ABBA...
                for arm in order:
                    for name, paths in scenarios.items():
                        r = asyncio.run(api_load.drive(f"http://127.0.0.1:{ports[arm]}", token, paths, rate=args.rate,
                                                       seconds=args.seconds, max_requests=10**6, warmup=1.0,
                                                       server_pid=procs[arm].pid))
                        cpu[arm, name].append(r["server_cpu_ms"])
                        print(f"round {rnd + 1} {arm} {name}: {r['server_cpu_ms']:.2f} ms CPU/request, "
                              f"p99 {r['p99']:.1f} ms, errors {r['errors']}", file=sys.stderr, flush=True)
            sat = {arm: asyncio.run(api_load.saturate(f"http://127.0.0.1:{ports[arm]}", token,
                                             f"/models/{api_load.MODEL}/versions?limit=100", args.seconds,
                                             procs[arm].pid)) for arm in arms}
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
    a, b = arms
    lines = ["# Admin API server CPU per request, before (A) and after (B), side by side (bench/api_cpu_ab.py)", "",
             f"`bench/api_cpu_ab.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}; {url.split(':', 1)[0]} registry "
             f"with {args.versions} versions x 5 metrics; one uvicorn worker per arm; read token; open loop at "
             f"{args.rate:g} req/s, {args.seconds:g} s blocks after 1 s of warm-up, {args.rounds} rounds with the "
             f"arms alternating (A B, B A, ...); the load generator shares the cores. Load average "
             f"{load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.", "",
             "| scenario | A: CPU ms/request (median) | A: range | B: CPU ms/request (median) | B: range | B / A |",
             "|---|---:|---|---:|---|---:|"]
    for name in scenarios:
        ma, mb = statistics.median(cpu[a, name]), statistics.median(cpu[b, name])
        lines.append(f"| {name} | {ma:.2f} | {min(cpu[a, name]):.2f}-{max(cpu[a, name]):.2f} | {mb:.2f} | "
                     f"{min(cpu[b, name]):.2f}-{max(cpu[b, name]):.2f} | {mb / ma:.2f} |")
    lines += ["", "Saturation, first version page (limit=100), closed loop of 32 connections:", "",
              "| arm | requests/s | server CPU ms/request | server CPU share of one core |", "|---|---:|---:|---:|"]
    lines += [f"| {arm} | {s['req_per_s']:.0f} | {s['cpu_ms']:.2f} | {s['server_cpu_share']:.2f} |" for arm, s in sat.items()]
    lines += ["", f"Arms: A = {a}, B = {b}."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
