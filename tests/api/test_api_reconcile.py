"""Issue 18: the API marks runs whose process is gone `crashed` when it starts, and lists them."""

from __future__ import annotations

import subprocess

import registry.repository as repo
from registry.repository.reconcile import worker_id
from registry.session import session_scope


def test_api_start_marks_a_killed_run_crashed(api_db, make_client, admin):
    proc = subprocess.Popen(["sleep", "60"])
    worker = worker_id(proc.pid)
    proc.kill()
    proc.wait()
    with session_scope(api_db) as s:
        run = repo.create_run(s, recipe={"name": "killed"})
        repo.set_run_status(s, run_id=run.id, status="running")
        repo.heartbeat_run(s, run_id=run.id, worker=worker)
        rerun = repo.create_run(s, recipe={"name": "killed"}, resumed_from_id=run.id)
        run_id, rerun_id = run.id, rerun.id
    client = make_client()
    body = client.get("/runs", params={"status": "crashed"}, headers=admin).json()
    assert body["count"] == 1 and body["data"][0]["id"] == run_id
    assert "gone" in body["data"][0]["error"] and body["data"][0]["heartbeat_at"]
    assert client.get(f"/runs/{rerun_id}", headers=admin).json()["resumed_from_id"] == run_id
