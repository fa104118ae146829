"""Pipeline runs and their stages. A stage's `cache_key` lets a resumed or repeated run skip work:
`find_completed_stage(cache_key=...)` returns the latest completed stage with that key (and its outputs).

Run status moves pending -> running -> completed | failed | cancelled (pending may also go straight to
a terminal state); a terminal run cannot change again (InvalidState). Reconciliation
(repository/reconcile.py) moves a dead pending/running run to `crashed`; a crashed run may still end
(completed/failed/cancelled) or revive (running) when its process turns out to be alive.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.errors import InvalidState, NotFound
from registry.models import RUN_STATUSES, RUN_TERMINAL, STAGE_STATUSES, PipelineRun, StageRun, utcnow
from registry.repository._util import get_row, paginate

_NEXT = {"pending": {"running", "crashed", *RUN_TERMINAL}, "running": {"crashed", *RUN_TERMINAL},
         "crashed": {"running", *RUN_TERMINAL}}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def recipe_hash(recipe: dict) -> str:
    """sha256 of the recipe's canonical JSON (sorted keys, no spaces): equal recipes, equal hash."""
    return hashlib.sha256(canonical_json(recipe).encode()).hexdigest()


def create_run(session: Session, *, recipe: dict, flow_run_id: str | None = None, git_commit: str | None = None,
               library_versions: dict[str, str] | None = None, resumed_from_id: int | None = None) -> PipelineRun:
    """A new pending run; `resumed_from_id`: the crashed run of the same recipe it resumes
    (`latest_crashed_run`)."""
    if not isinstance(recipe, dict):
        raise InvalidState(f"recipe must be a dict (the recipe's JSON), got {type(recipe).__name__}")
    recipe = json.loads(canonical_json(recipe))  # what is stored is exactly what was hashed
    run = PipelineRun(recipe=recipe, recipe_hash=recipe_hash(recipe), flow_run_id=flow_run_id,
                      git_commit=git_commit, library_versions=library_versions, status="pending",
                      resumed_from_id=resumed_from_id)
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, *, run_id: int) -> PipelineRun:
    return get_row(session, PipelineRun, run_id,
                   f"pipeline run {run_id} not found; list runs with `shrinkwrap runs` or GET /runs")


def get_run_by_flow_run_id(session: Session, *, flow_run_id: str) -> PipelineRun:
    run = session.scalar(select(PipelineRun).where(PipelineRun.flow_run_id == str(flow_run_id))
                         .order_by(PipelineRun.id.desc()).limit(1))
    if run is None:
        raise NotFound(f"no pipeline run recorded for Prefect flow run {flow_run_id}")
    return run


def link_flow_run(session: Session, *, run_id: int, flow_run_id: str, name: str | None = None,
                  url: str | None = None) -> PipelineRun:
    """Record the Prefect flow run that executes this run: its id, name and UI page."""
    run = get_run(session, run_id=run_id)
    if run.flow_run_id and run.flow_run_id != str(flow_run_id):
        raise InvalidState(f"pipeline run {run_id} belongs to flow run {run.flow_run_id}, not {flow_run_id}; "
                           "a registry run is executed by one flow run (start a new run instead)")
    run.flow_run_id, run.flow_run_name, run.flow_run_url = str(flow_run_id), name, url
    session.flush()
    return run


def list_runs(session: Session, *, status: str | None = None, limit: int = 100,
              offset: int = 0) -> tuple[list[PipelineRun], int]:
    """Newest first."""
    stmt = select(PipelineRun).order_by(PipelineRun.id.desc())
    if status is not None:
        _check(status, RUN_STATUSES, "run status")
        stmt = stmt.where(PipelineRun.status == status)
    return paginate(session, stmt, limit=limit, offset=offset)


def set_run_status(session: Session, *, run_id: int, status: str, error: str | None = None) -> PipelineRun:
    _check(status, RUN_STATUSES, "run status")
    run = get_run(session, run_id=run_id)
    if status == run.status:
        return run
    if status not in _NEXT.get(run.status, set()):
        raise InvalidState(f"run {run_id} is {run.status!r} and cannot become {status!r}; "
                           f"allowed next: {sorted(_NEXT.get(run.status, set())) or 'none (terminal)'}")
    now = utcnow()
    if status == "running":
        run.started_at = run.started_at if run.status == "crashed" else now
        run.finished_at = None
    if status in (*RUN_TERMINAL, "crashed"):
        run.finished_at = now
        run.started_at = run.started_at or now
    run.status = status
    if error is not None:
        run.error = error
    session.flush()
    return run


def start_stage(session: Session, *, run_id: int, name: str, params_hash: str | None = None,
                cache_key: str | None = None) -> StageRun:
    run = get_run(session, run_id=run_id)
    if run.status in RUN_TERMINAL:
        raise InvalidState(f"run {run_id} is {run.status!r}; start a new run instead of adding stage {name!r}")
    stage = StageRun(run_id=run_id, name=name, params_hash=params_hash, cache_key=cache_key, status="running")
    session.add(stage)
    session.flush()
    return stage


def get_stage(session: Session, *, stage_id: int) -> StageRun:
    return get_row(session, StageRun, stage_id, f"stage run {stage_id} not found")


def finish_stage(session: Session, *, stage_id: int, status: str = "completed", outputs: dict | None = None,
                 error: str | None = None) -> StageRun:
    """Close a running stage with a final status (completed, failed, skipped, cached) and its outputs."""
    _check(status, STAGE_STATUSES, "stage status")
    if status == "running":
        raise InvalidState("finish_stage needs a final status (completed, failed, skipped or cached), got 'running'")
    stage = get_stage(session, stage_id=stage_id)
    if stage.status != "running":
        raise InvalidState(f"stage {stage_id} ({stage.name}) is already {stage.status!r}")
    stage.status = status
    stage.finished_at = utcnow()
    if outputs is not None:
        stage.outputs = json.loads(canonical_json(outputs))
    if error is not None:
        stage.error = error
    session.flush()
    return stage


def list_stages(session: Session, *, run_id: int) -> list[StageRun]:
    return list(session.scalars(select(StageRun).where(StageRun.run_id == run_id).order_by(StageRun.id)))


def find_completed_stage(session: Session, *, cache_key: str) -> StageRun | None:
    """The most recent completed stage with `cache_key` (any run), or None: what a resume can reuse."""
    return session.scalar(select(StageRun).where(StageRun.cache_key == cache_key, StageRun.status == "completed")
                          .order_by(StageRun.finished_at.desc(), StageRun.id.desc()).limit(1))


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InvalidState(f"{what} {value!r} is not one of {list(allowed)}")
