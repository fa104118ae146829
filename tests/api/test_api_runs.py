"""Runs: list with status filter and pagination, detail with stages/metrics/artifacts, and triggering
through a real Prefect deployment under the test harness (202 + a real flow run), cancel, and the 503
that tells how to start Prefect when the deployment is missing or the server is unreachable."""

from __future__ import annotations

import time

import pytest
from api_testing import assert_error

from api import prefect_runs
from api.errors import ApiError


def test_list_and_detail(client, admin, seed):
    body = client.get("/runs", headers=admin).json()
    assert body["count"] == 1 and body["data"][0]["status"] == "running"
    assert client.get("/runs", params={"status": "completed"}, headers=admin).json()["count"] == 0
    assert_error(client.get("/runs", params={"status": "bogus"}, headers=admin), 422)
    detail = client.get(f"/runs/{seed.run_id}", headers=admin).json()
    assert [s["name"] for s in detail["stages"]] == ["distill", "export"]
    assert detail["stages"][0]["status"] == "completed" and detail["recipe"] == {"name": "seed"}
    assert detail["metrics_count"] == 4 and {m["name"] for m in detail["metrics"]} == {"loss", "accuracy"}
    assert len(detail["artifacts"]) == 3
    page = client.get(f"/runs/{seed.run_id}/metrics", params={"name": "loss", "limit": 1, "offset": 1},
                      headers=admin).json()
    assert page["count"] == 2 and page["data"][0]["value"] == 0.3 and page["data"][0]["step"] == 2
    assert_error(client.get("/runs/424242", headers=admin), 404, "not_found")


RECIPE = {"name": "api-test", "dataset": {"name": "mnist", "n_train": 100}}


def test_trigger_creates_prefect_flow_run_and_cancel(client, admin, deployment):
    from prefect.client.orchestration import get_client

    r = client.post("/runs", json=RECIPE, headers=admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["deployment"] == deployment and body["status"] == "pending"
    with get_client(sync_client=True) as prefect_client:
        flow_run = prefect_client.read_flow_run(body["flow_run_id"])
        dep = prefect_client.read_deployment_by_name(deployment)
    assert flow_run.deployment_id == dep.id
    assert flow_run.parameters["recipe"]["dataset"]["n_train"] == 100
    assert f"shrinkwrap-run:{body['run_id']}" in flow_run.tags
    run = client.get(f"/runs/{body['run_id']}", headers=admin).json()
    assert run["flow_run_id"] == body["flow_run_id"] and run["status"] == "pending"

    assert_error(client.post("/runs", json={**RECIPE, "dataset": {"nme": "mnist"}}, headers=admin), 422)
    assert_error(client.post("/runs", json={**RECIPE, "distill": {"temperature": -1}}, headers=admin), 422)

    r = client.post(f"/runs/{body['run_id']}/cancel", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    with get_client(sync_client=True) as prefect_client:
        assert prefect_client.read_flow_run(body["flow_run_id"]).state.type.value == "CANCELLED"
    assert_error(client.post(f"/runs/{body['run_id']}/cancel", headers=admin), 409, "invalid_state")
    assert_error(client.post("/runs/424242/cancel", headers=admin), 404)


def test_trigger_without_deployment_is_503(make_client, admin, prefect):
    client = make_client(deployment="compress-model/not-served")
    err = assert_error(client.post("/runs", json=RECIPE, headers=admin), 503, "prefect_unavailable")
    assert "shrinkwrap serve" in err["message"] and "not-served" in err["message"]
    runs = client.get("/runs", headers=admin).json()  # the pending run was committed, then marked failed
    assert runs["count"] == 1 and runs["data"][0]["status"] == "failed"
    assert "not-served" in runs["data"][0]["error"] and "could not start the flow run" in runs["data"][0]["error"]


def test_trigger_holds_no_database_lock_while_prefect_answers(sqlite_db, tmp_path, sqlite_admin):
    """POST /runs used to call Prefect inside its write transaction: on SQLite that held the only writer
    lock for up to the Prefect timeout. The real API runs as `shrinkwrap api` against a Prefect URL that
    accepts connections and never answers; while the request waits, another writer must commit."""
    import os
    import socket
    import subprocess
    import sys
    import threading

    import httpx

    import registry.repository as repo
    from registry.session import make_engine, session_scope

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # the kernel accepts; nobody ever answers
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SHRINKWRAP_DATABASE_URL": sqlite_db, "SHRINKWRAP_HOME": str(tmp_path / "home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{hole.getsockname()[1]}/api",
           "SHRINKWRAP_API_PREFECT_TIMEOUT_S": "3", "PREFECT_CLIENT_MAX_RETRIES": "0"}
    server = subprocess.Popen([sys.executable, "-m", "shrinkwrap", "api", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, result = f"http://127.0.0.1:{port}", {}
    engine = make_engine(sqlite_db)
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{base}/health"):
            assert time.monotonic() < deadline and server.poll() is None, "shrinkwrap api did not start"
            time.sleep(0.2)
        thread = threading.Thread(target=lambda: result.update(
            r=httpx.post(f"{base}/runs", json=RECIPE, headers=sqlite_admin, timeout=60)))
        thread.start()
        deadline = time.monotonic() + 10
        while True:  # the pending run is committed before Prefect is called
            with session_scope(engine) as s:
                if repo.list_runs(s, limit=1, offset=0)[1]:
                    break
            assert time.monotonic() < deadline, "the pending run was never committed"
            time.sleep(0.05)
        with session_scope(engine) as s:  # a write while the API waits on Prefect: must not wait for it
            repo.create_model(s, name="written-meanwhile")
        assert thread.is_alive(), "the write waited until the Prefect call had ended"
        thread.join(timeout=60)
        with session_scope(engine) as s:
            run = repo.list_runs(s, limit=1, offset=0)[0][0]
            assert run.status == "failed" and "could not start the flow run" in run.error
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()
        hole.close()
    assert_error(result["r"], 503, "prefect_unavailable")


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_unreachable_prefect_is_503(prefect):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with pytest.raises(ApiError) as info:
            prefect_runs.trigger_flow_run(deployment="compress-model/default", parameters={}, run_id=1, timeout_s=2)
        ok, detail = prefect_runs.prefect_health(timeout_s=2)
    assert info.value.status == 503 and "unreachable" in info.value.message
    assert "shrinkwrap serve" in info.value.message
    assert not ok and "127.0.0.1:9" in detail
