"""Scale-out: several Prefect process workers on one pool (scripts/stack-local up --workers 2) share one
registry and one artifact directory (standing in for a network file system). Four runs POSTed at once
all complete, both workers take runs, and the registry has every version exactly once with its metrics.
A run whose process is killed with -9 ends CRASHED in Prefect, and its rerun resumes from the cache.
Plus the fsspec branch of the flows' artifact reads (an object store instead of a shared directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from flows_testing import tiny_mnist
from scale_testing import admin_token, flow_runs, local_stack, submit, wait_runs

from flows import record
from registry import repository as repo
from registry.session import dispose_engines, init_db, session_scope

MODEL = "mnist-scale"
VARIANTS = 3  # sparse-fp32, int8, nf4 in tiny_mnist


def small(seed: int) -> dict:
    """The tiny mnist recipe, smaller still; a new seed gives new cache keys, so every run does the work."""
    return tiny_mnist(name=MODEL, seed=seed, dataset={"n_train": 600, "n_test": 300})


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_share_four_runs_and_a_killed_run_crashes(tmp_path):
    with local_stack(tmp_path, workers=2) as (env, api), \
            httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin_token(env)}"}, timeout=30) as client:
        submitted = [submit(client, small(seed)) for seed in range(4)]
        runs = wait_runs(client, [rid for rid, _ in submitted], timeout_s=900)
        assert {rid: r["status"] for rid, r in runs.items()} == dict.fromkeys(runs, "completed"), runs
        workers = {fid: info["worker"] for fid, info in flow_runs([fid for _, fid in submitted], env).items()}
        assert None not in workers.values() and len(set(workers.values())) == 2, workers  # both workers did work
        with session_scope(env["SHRINKWRAP_DATABASE_URL"]) as s:
            versions, total = repo.list_versions(s, model_name=MODEL)
            numbers = sorted(v.version for v in versions)
            metrics = [repo.latest_values(s, version_id=v.id) for v in versions]
        assert total == 4 * VARIANTS and numbers == list(range(1, 4 * VARIANTS + 1))  # every version, no duplicate
        assert all({"accuracy", "file_bytes"} <= set(m) for m in metrics), metrics  # no lost metric

        run_id, flow_run_id = submit(client, small(seed=10))
        _kill_when_distilling(client, run_id, flow_run_id, env)
        assert _wait_state(flow_run_id, env, "CRASHED") == "CRASHED"
        # the next `shrinkwrap runs` reconciles: Prefect says CRASHED, so the registry run becomes crashed
        listing = subprocess.run([sys.executable, "-m", "shrinkwrap", "runs"], env=env, capture_output=True,
                                 text=True, timeout=120)
        assert listing.returncode == 0, listing.stderr
        killed = client.get(f"/runs/{run_id}").json()
        assert killed["status"] == "crashed" and killed["error"], killed
        again, _ = submit(client, small(seed=10))
        rerun = wait_runs(client, [again], timeout_s=600)[again]
        assert rerun["status"] == "completed", rerun
        assert rerun["resumed_from_id"] == run_id  # the rerun records which crashed run it resumed
        assert {st["name"]: st["status"] for st in rerun["stages"]}["dataset"] == "cached"  # resumed from the cache
    dispose_engines()


def _kill_when_distilling(client, run_id: int, flow_run_id: str, env: dict, timeout_s: float = 300) -> None:
    """kill -9 the flow-run process (the worker's child) once the dataset stage is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stages = {st["name"]: st["status"] for st in client.get(f"/runs/{run_id}").json()["stages"]}
        if stages.get("dataset") in ("completed", "cached") and "register" not in stages:
            pid = flow_runs([flow_run_id], env)[flow_run_id]["pid"]
            if pid:
                os.kill(int(pid), signal.SIGKILL)
                return
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} never reached a killable point in {timeout_s} s")


def _wait_state(flow_run_id: str, env: dict, want: str, timeout_s: float = 120) -> str | None:
    deadline, state = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        state = flow_runs([flow_run_id], env)[flow_run_id]["state"]
        if state == want:
            break
        time.sleep(1)
    return state


@pytest.fixture
def remote_registry(db_url, tmp_path, monkeypatch):
    """A registry whose artifact root is an fsspec URI (fsspec's memory filesystem)."""
    init_db(db_url)
    monkeypatch.setenv("SHRINKWRAP_DATABASE_URL", db_url)
    monkeypatch.setenv("SHRINKWRAP_ARTIFACT_ROOT", f"memory://sw-{tmp_path.name}")
    yield tmp_path
    dispose_engines()


def test_stage_outputs_on_an_fsspec_store_are_read_back(remote_registry):
    """Files and folders registered by one stage come back as verified local copies for the next."""
    with session_scope() as s:
        run_id = repo.create_run(s, recipe={"name": "t"}).id
        repo.set_run_status(s, run_id=run_id, status="running")

    def body(ctx):
        (ctx.workdir / "ckpt.bin").write_bytes(b"weights" * 100)
        (ctx.workdir / "export").mkdir()
        (ctx.workdir / "export" / "model.safetensors").write_bytes(b"tensor" * 50)
        ctx.register("checkpoint", kind="checkpoint", path=ctx.workdir / "ckpt.bin", format="bin")
        ctx.register("export", kind="export", path=ctx.workdir / "export", format="dir")
        return {}

    out = record.run_stage("produce", run_id=run_id, params={}, inputs={}, body=body)
    assert record.store().fs is not None  # the fsspec branch
    ckpt = record.artifact_path(out["artifacts"]["checkpoint"], remote_registry / "in")
    folder = record.artifact_path(out["artifacts"]["export"], remote_registry / "in")
    assert ckpt.read_bytes() == b"weights" * 100
    assert (folder / "model.safetensors").read_bytes() == b"tensor" * 50
    assert record.artifact_path(out["artifacts"]["checkpoint"], remote_registry / "in") == ckpt  # copied once
