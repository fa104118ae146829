"""Scale-out helpers shared by tests/flows/test_dask.py, test_scale_out.py and bench/scale_out.py: a Dask
cluster on loopback (a `dask scheduler` process and N `dask worker` processes, as an operator starts
them), and `scripts/stack-local up --workers N` with runs submitted through `POST /runs`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack-local"
TERMINAL = ("completed", "failed", "cancelled", "crashed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """What every Dask worker needs: this checkout on PYTHONPATH, the registry URL, artifact root and
    export dir of the flow (SHRINKWRAP_*), the Prefect API, and one torch thread per process."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def dask_cluster(n_workers: int, env: dict[str, str], logs: Path) -> Iterator[str]:
    """Start `dask scheduler` + `n_workers` single-threaded `dask worker` processes; yields the address."""
    from distributed import Client

    logs.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    procs = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
             "--no-dashboard"], env=env, stdout=open(logs / "scheduler.log", "wb"), stderr=subprocess.STDOUT))  # noqa: SIM115
        for i in range(n_workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--name", f"w{i}", "--nthreads", "1",
                 "--nworkers", "1", "--no-dashboard", "--memory-limit", "0", "--local-directory", str(logs / f"w{i}")],
                env=env, stdout=open(logs / f"worker-{i}.log", "wb"), stderr=subprocess.STDOUT))  # noqa: SIM115
        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


# -- the local stack with several Prefect workers -------------------------------------------------
def stack_base(tmp: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHRINKWRAP_", "PREFECT_"))}
    base.setdefault("PY", sys.executable)  # the interpreter running the tests (the checkout may have no .venv)
    return base | {"STACK_DIR": str(tmp / "stack"), "STACK_NAME": f"sw_stack_{uuid.uuid4().hex[:8]}",
                   "PREFECT_PORT": str(free_port()), "API_PORT": str(free_port()), "DROP": "1"} | extra


def stack_environment(base: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([str(STACK), "env"], env=base, capture_output=True, text=True, check=True).stdout
    env = dict(base)
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


@contextlib.contextmanager
def local_stack(tmp: Path, workers: int, *, show_logs: bool = True, **extra: str) -> Iterator[tuple[dict, str]]:
    """`scripts/stack-local up --workers N`, each worker taking one flow run at a time (WORKER_LIMIT=1) and
    polling every 2 s; yields (environment of the stack, API base URL)."""
    base = stack_base(tmp, **({"WORKER_LIMIT": "1", "PREFECT_WORKER_QUERY_SECONDS": "2"} | extra))
    try:
        subprocess.run([str(STACK), "up", "--workers", str(workers)], env=base, check=True, timeout=420)
        yield stack_environment(base), f"http://127.0.0.1:{base['API_PORT']}"
    finally:
        subprocess.run([str(STACK), "down"], env=base, timeout=120)
        logs = tmp / "stack" / "logs"
        for log in sorted(logs.glob("*.log")) if show_logs and logs.exists() else []:
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")


def admin_token(env: dict[str, str]) -> str:
    return subprocess.run([env["PY"], "-m", "shrinkwrap", "token", "create", "--scope", "admin"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def submit(client, recipe: dict) -> tuple[int, str]:
    """POST /runs; returns (registry run id, Prefect flow run id)."""
    response = client.post("/runs", content=json.dumps(recipe), headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    return response.json()["run_id"], response.json()["flow_run_id"]


def wait_runs(client, run_ids: list[int], timeout_s: float = 600) -> dict[int, dict]:
    """Poll GET /runs/{id} until every run is terminal (or the timeout); returns the last bodies."""
    deadline, runs = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        runs = {rid: client.get(f"/runs/{rid}").json() for rid in run_ids}
        if all(r["status"] in TERMINAL for r in runs.values()):
            break
        time.sleep(1)
    return runs


def flow_runs(flow_run_ids: list[str], env: dict[str, str]) -> dict[str, dict]:
    """Per Prefect flow run of the stack: the worker that ran it (the `prefect.worker.name` label a worker
    gives its runs), its state type and its infrastructure pid (the process worker's child process)."""
    code = ("import json,sys,uuid\nfrom prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c:\n"
            "    runs = {i: c.read_flow_run(uuid.UUID(i)) for i in sys.argv[1:]}\n"
            "print(json.dumps({i: {'worker': r.labels.get('prefect.worker.name'), 'pid': r.infrastructure_pid,"
            " 'state': r.state_type.value if r.state_type else None} for i, r in runs.items()}))")
    out = subprocess.run([env["PY"], "-c", code, *flow_run_ids], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
