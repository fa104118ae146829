"""Pipeline runs: list (filter by status, paginated), get with stages/metrics/artifacts, trigger a new run
through the Prefect deployment (202), cancel one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select

from api import prefect_runs
from api.auth import AdminDep, ReadDep
from api.deps import PageDep, SessionDep, SettingsDep
from api.schemas import METRIC_PATTERN, MetricsPublic, RunDetail, RunPublic, RunsPublic, RunTriggered
from flows.recipe import Recipe
from registry.errors import InvalidState
from registry.models import RUN_TERMINAL, Metric
from registry.repository import artifacts as artifacts_repo
from registry.repository import runs as repo

router = APIRouter(prefix="/runs", tags=["runs"], dependencies=[ReadDep])
RunIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="registry run id")]
RunStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
METRICS_INLINE = 1000  # metrics embedded in GET /runs/{id}; the rest via /runs/{id}/metrics
ARTIFACTS_INLINE = 1000


@router.get("", response_model=RunsPublic, summary="List runs, newest first")
def list_runs(session: SessionDep, page: PageDep, status: RunStatus | None = None):
    rows, total = repo.list_runs(session, status=status, limit=page.limit, offset=page.offset)
    return RunsPublic(data=rows, count=total)


@router.get("/{run_id}", response_model=RunDetail, summary="Get a run with its stages, metrics and artifacts")
def get_run(session: SessionDep, run_id: RunIdPath):
    run = repo.get_run(session, run_id=run_id)
    metrics, metrics_count = _metric_page(session, run_id=run.id, name=None, limit=METRICS_INLINE, offset=0)
    artifacts, _ = artifacts_repo.list_artifacts(session, run_id=run.id, limit=ARTIFACTS_INLINE, offset=0)
    public = RunPublic.model_validate(run).model_dump()
    return RunDetail(**public, recipe=run.recipe, library_versions=run.library_versions,
                     stages=repo.list_stages(session, run_id=run.id), metrics=metrics,
                     metrics_count=metrics_count, artifacts=artifacts)


@router.get("/{run_id}/metrics", response_model=MetricsPublic, summary="Metrics of a run (paginated)")
def run_metrics(session: SessionDep, run_id: RunIdPath, page: PageDep,
                name: Annotated[str | None, Query(pattern=METRIC_PATTERN, max_length=200)] = None):
    repo.get_run(session, run_id=run_id)
    rows, total = _metric_page(session, run_id=run_id, name=name, limit=page.limit, offset=page.offset)
    return MetricsPublic(data=rows, count=total)


@router.post("", response_model=RunTriggered, status_code=202, dependencies=[AdminDep],
             summary="Start a compression run of the Prefect deployment with this recipe")
def trigger_run(session: SessionDep, settings: SettingsDep, recipe: Recipe):
    recipe_json = recipe.model_dump(mode="json")
    run = repo.create_run(session, recipe=recipe_json)
    flow_run_id = prefect_runs.trigger_flow_run(deployment=settings.deployment, parameters={"recipe": recipe_json},
                                                run_id=run.id, timeout_s=settings.prefect_timeout_s)
    run.flow_run_id = flow_run_id
    session.flush()
    return RunTriggered(run_id=run.id, flow_run_id=flow_run_id, deployment=settings.deployment, status=run.status)


@router.post("/{run_id}/cancel", response_model=RunPublic, status_code=202, dependencies=[AdminDep],
             summary="Cancel a pending or running run (Prefect state Cancelling)")
def cancel_run(session: SessionDep, settings: SettingsDep, run_id: RunIdPath):
    run = repo.get_run(session, run_id=run_id)
    if run.status in RUN_TERMINAL:
        raise InvalidState(f"run {run_id} is already {run.status!r}; only pending or running runs can be cancelled")
    if run.flow_run_id:
        prefect_runs.cancel_flow_run(flow_run_id=run.flow_run_id, timeout_s=settings.prefect_timeout_s)
    return repo.set_run_status(session, run_id=run_id, status="cancelled", error="cancelled through the API")


def _metric_page(session, *, run_id: int, name: str | None, limit: int, offset: int) -> tuple[list[Metric], int]:
    # TODO(registry): a paginated registry.repository.metrics.list_metrics would replace this query.
    cond = [Metric.run_id == run_id] + ([Metric.name == name] if name is not None else [])
    total = session.scalar(select(func.count(Metric.id)).where(*cond)) or 0
    rows = list(session.scalars(select(Metric).where(*cond).order_by(Metric.id).limit(limit).offset(offset)))
    return rows, total
