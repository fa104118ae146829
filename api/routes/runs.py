"""Pipeline runs: list (filter by status, paginated), get with stages/metrics/artifacts, trigger a new run
through the Prefect deployment (202), cancel one."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import prefect_runs
from api.deps import AdminDep, DbDep, PageDep, SettingsDep
from api.errors import ApiError
from api.schemas import METRIC_PATTERN, MetricsPublic, RunDetail, RunPublic, RunsPublic, RunTriggered
from flows.recipe import AnyRecipe
from registry.errors import InvalidState
from registry.models import RUN_TERMINAL, Metric
from registry.repository import artifacts as artifacts_repo
from registry.repository import runs as repo

router = APIRouter(prefix="/runs", tags=["runs"])
RunIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="registry run id")]
RunStatus = Literal["pending", "running", "completed", "failed", "cancelled", "crashed"]
METRICS_INLINE = 1000  # metrics embedded in GET /runs/{id}; the rest via /runs/{id}/metrics
ARTIFACTS_INLINE = 1000


@router.get("", response_model=RunsPublic, summary="List runs, newest first")
async def list_runs(db: DbDep, page: PageDep, status: RunStatus | None = None):
    def listing(session: Session) -> RunsPublic:
        rows, total = repo.list_runs(session, status=status, limit=page.limit, offset=page.offset)
        return RunsPublic(data=rows, count=total)

    return await db.run(listing)


@router.get("/{run_id}", response_model=RunDetail, summary="Get a run with its stages, metrics and artifacts")
async def get_run(db: DbDep, run_id: RunIdPath):
    def detail(session: Session) -> RunDetail:
        run = repo.get_run(session, run_id=run_id)
        metrics, metrics_count = _metric_page(session, run_id=run.id, name=None, limit=METRICS_INLINE, offset=0)
        artifacts, _ = artifacts_repo.list_artifacts(session, run_id=run.id, limit=ARTIFACTS_INLINE, offset=0)
        public = RunPublic.model_validate(run).model_dump()
        return RunDetail(**public, recipe=run.recipe, library_versions=run.library_versions,
                         stages=repo.list_stages(session, run_id=run.id), metrics=metrics,
                         metrics_count=metrics_count, artifacts=artifacts)

    return await db.run(detail)


@router.get("/{run_id}/metrics", response_model=MetricsPublic, summary="Metrics of a run (paginated)")
async def run_metrics(db: DbDep, run_id: RunIdPath, page: PageDep,
                      name: Annotated[str | None, Query(pattern=METRIC_PATTERN, max_length=200)] = None):
    def listing(session: Session) -> MetricsPublic:
        repo.get_run(session, run_id=run_id)
        rows, total = _metric_page(session, run_id=run_id, name=name, limit=page.limit, offset=page.offset)
        return MetricsPublic(data=rows, count=total)

    return await db.run(listing)


@router.post("", response_model=RunTriggered, status_code=202, dependencies=[AdminDep],
             summary="Start a compression run of the Prefect deployment with this recipe")
async def trigger_run(db: DbDep, settings: SettingsDep, recipe: AnyRecipe):
    """Three short steps, so no database lock is held while Prefect is called: commit the pending run,
    ask Prefect for a flow run (outside any transaction), then record its id, or mark the run failed
    with the reason and answer 503."""
    recipe_json = recipe.model_dump(mode="json")
    run_id = await db.run(lambda session: repo.create_run(session, recipe=recipe_json).id)
    try:
        flow_run_id = await asyncio.to_thread(
            prefect_runs.trigger_flow_run, deployment=settings.deployment, parameters={"recipe": recipe_json},
            run_id=run_id, timeout_s=settings.prefect_timeout_s)
    except ApiError as err:
        reason = f"could not start the flow run: {err.message}"
        await db.run(lambda session: repo.set_run_status(session, run_id=run_id, status="failed", error=reason))
        raise

    def record(session: Session) -> RunTriggered:
        run = repo.get_run(session, run_id=run_id)
        run.flow_run_id = flow_run_id
        session.flush()
        return RunTriggered(run_id=run.id, flow_run_id=flow_run_id, deployment=settings.deployment,
                            status=run.status)

    return await db.run(record)


@router.post("/{run_id}/cancel", response_model=RunPublic, status_code=202, dependencies=[AdminDep],
             summary="Cancel a pending or running run (Prefect state Cancelling)")
async def cancel_run(db: DbDep, settings: SettingsDep, run_id: RunIdPath):
    def check(session: Session) -> str | None:
        run = repo.get_run(session, run_id=run_id)
        if run.status in RUN_TERMINAL:
            raise InvalidState(f"run {run_id} is already {run.status!r}; only pending or running runs can be "
                               "cancelled")
        return run.flow_run_id

    flow_run_id = await db.run(check)
    if flow_run_id:  # outside any transaction: no lock is held while Prefect answers
        await asyncio.to_thread(prefect_runs.cancel_flow_run, flow_run_id=flow_run_id,
                                timeout_s=settings.prefect_timeout_s)
    return await db.run(lambda session: RunPublic.model_validate(repo.set_run_status(
        session, run_id=run_id, status="cancelled", error="cancelled through the API")))


def _metric_page(session: Session, *, run_id: int, name: str | None, limit: int,
                 offset: int) -> tuple[list[Metric], int]:
    # TODO(registry): a paginated registry.repository.metrics.list_metrics would replace this query.
    cond = [Metric.run_id == run_id] + ([Metric.name == name] if name is not None else [])
    total = session.scalar(select(func.count(Metric.id)).where(*cond)) or 0
    rows = list(session.scalars(select(Metric).where(*cond).order_by(Metric.id).limit(limit).offset(offset)))
    return rows, total
