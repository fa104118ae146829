"""Run reconciliation (issue 18): heartbeats, `crashed` with the reason when the process or the Prefect
flow run is gone or the heartbeat is stale, revival, resumed_from; on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest

import registry.repository as repo
from registry.errors import SchemaOutOfDate
from registry.models import utcnow
from registry.reconciler import reconcile, start_reconciler
from registry.repository.reconcile import worker_alive, worker_id
from registry.session import ensure_schema, init_db, session_scope

RECIPE = {"name": "m", "seed": 0}


def _running(s, *, worker: str | None = None, age_s: float = 0, flow_run_id: str | None = None, recipe=RECIPE):
    run = repo.create_run(s, recipe=recipe, flow_run_id=flow_run_id)
    repo.set_run_status(s, run_id=run.id, status="running")
    repo.heartbeat_run(s, run_id=run.id, worker=worker)
    run.heartbeat_at = utcnow() - timedelta(seconds=age_s)
    s.flush()
    return run


def _dead_worker() -> str:
    proc = subprocess.Popen(["sleep", "60"])
    worker = worker_id(proc.pid)
    proc.kill()
    proc.wait()
    return worker


def test_heartbeat_records_this_process_and_keeps_status(session):
    run = _running(session)
    assert run.status == "running" and run.worker == worker_id()
    assert worker_alive(run.worker) is True
    assert (utcnow() - run.heartbeat_at).total_seconds() < 60


def test_a_killed_process_makes_its_run_crashed_with_the_reason(session):
    run = _running(session, worker=_dead_worker())
    stage = repo.start_stage(session, run_id=run.id, name="teacher")
    alive = _running(session, age_s=10_000)  # this process: alive, however old its heartbeat
    crashed = repo.reconcile_runs(session, timeout_s=300)
    assert [r.id for r in crashed] == [run.id]
    assert run.status == "crashed" and "process" in run.error and "gone" in run.error
    assert run.finished_at is not None and alive.status == "running"
    assert repo.get_stage(session, stage_id=stage.id).status == "failed"
    assert repo.list_runs(session, status="crashed")[1] == 1


def test_stale_heartbeat_of_another_host_and_prefect_states(session):
    stale = _running(session, worker="elsewhere:123:456", age_s=400)
    fresh = _running(session, worker="elsewhere:124:456", age_s=10)
    prefect_dead = _running(session, worker="elsewhere:125:456", flow_run_id="f1")
    pending_gone = repo.create_run(session, recipe=RECIPE, flow_run_id="f2")
    pending_unknown = repo.create_run(session, recipe=RECIPE, flow_run_id="f3")
    prefect_running = _running(session, worker="elsewhere:126:456", age_s=400, flow_run_id="f4")
    crashed = repo.reconcile_runs(session, timeout_s=300,
                                  flow_run_states={"f1": "CRASHED", "f2": "GONE", "f4": "RUNNING"})
    assert {r.id for r in crashed} == {stale.id, prefect_dead.id, pending_gone.id}
    assert "no heartbeat for 4" in stale.error and "timeout 300 s" in stale.error
    assert "f1 is CRASHED" in prefect_dead.error and "f2 is GONE" in pending_gone.error
    assert (fresh.status, pending_unknown.status, prefect_running.status) == ("running", "pending", "running")
    assert repo.reconcile_runs(session, timeout_s=None) == []  # liveness only: nothing else to say


def test_a_crashed_run_revives_on_heartbeat_and_can_still_end(session):
    run = _running(session, worker=_dead_worker())
    repo.reconcile_runs(session, timeout_s=300)
    assert run.status == "crashed"
    repo.heartbeat_run(session, run_id=run.id)  # it was alive after all
    assert run.status == "running" and run.error is None and run.finished_at is None
    repo.reconcile_runs(session, timeout_s=300)
    repo.set_run_status(session, run_id=run.id, status="completed")
    repo.heartbeat_run(session, run_id=run.id)  # late heartbeat of a finished run: ignored
    assert run.status == "completed"


def test_latest_crashed_run_finds_what_a_rerun_resumes_from(session):
    old = _running(session, worker=_dead_worker())
    other_recipe = _running(session, worker=_dead_worker(), recipe={"name": "other"})
    assert old.status == "running"  # nobody reconciled yet: latest_crashed_run does it for this recipe
    found = repo.latest_crashed_run(session, recipe_hash=old.recipe_hash)
    assert found is not None and found.id == old.id and other_recipe.status == "running"
    rerun = repo.create_run(session, recipe=RECIPE, resumed_from_id=found.id)
    assert rerun.resumed_from_id == old.id
    assert repo.latest_crashed_run(session, recipe_hash=old.recipe_hash, exclude_run_id=old.id) is None


def test_reconcile_helpers_commit_and_ask_the_lookup(url):
    with session_scope(url) as s:
        dead = _running(s, worker=_dead_worker(), flow_run_id="fa").id
    asked = []
    out = reconcile(url, timeout_s=300, lookup=lambda ids: asked.extend(ids) or None)
    assert asked == ["fa"] and [r for r, _ in out] == [dead]
    with session_scope(url) as s:
        assert repo.get_run(s, run_id=dead).status == "crashed"
    thread, stop = start_reconciler(0.05, url=url, timeout_s=300)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(ValueError, match="interval_s"):
        start_reconciler(0)


def test_ensure_schema_creates_only_a_fresh_embedded_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("SHRINKWRAP_DATABASE_URL", raising=False)
    monkeypatch.setenv("SHRINKWRAP_HOME", str(tmp_path / "home"))
    from registry.config import database_url

    ensure_schema()  # fresh: created
    with session_scope(database_url()) as s:
        repo.create_run(s, recipe=RECIPE)
    older = f"sqlite:///{tmp_path / 'older.db'}"
    init_db(older, revision="0001")
    with pytest.raises(SchemaOutOfDate, match="shrinkwrap db upgrade"):
        ensure_schema(older)  # an existing older schema is refused, never upgraded silently
