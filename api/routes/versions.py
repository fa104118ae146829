"""Versions of a model: list, get, metrics, lineage; aliases set/removed through the registry's promotion
gates (a failed gate is 409 with `details.failures`); compare / Pareto front on two metrics."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from api.compare import compare_versions
from api.deps import AdminDep, DbDep, PageDep
from api.lineage import version_graph
from api.routes.models import ModelNamePath
from api.schemas import (
    ALIAS_PATTERN,
    METRIC_PATTERN,
    AliasSet,
    ComparePublic,
    LineageGraph,
    MetricsPublic,
    VersionPublic,
    VersionsPublic,
)
from registry.repository import versions as repo
from registry.repository.gates import Gate

router = APIRouter(prefix="/models/{name}", tags=["versions"])
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="version number")]
AliasPath = Annotated[str, Path(pattern=ALIAS_PATTERN, max_length=100, description="alias, e.g. production")]
MetricQuery = Annotated[str, Query(pattern=METRIC_PATTERN, max_length=200)]
HostQuery = Annotated[str | None, Query(pattern=r"^[0-9a-f]{16}$", description=(
    "with a timing metric on an axis: compare the versions measured on this host fingerprint "
    "(default: the newest version's)"))]


def fast_json(content) -> Response:
    """JSON of plain dicts, lists, numbers, strings and aware datetimes (written with `Z`, as pydantic
    writes UTC), for routes whose rows already have their schema's types."""
    return Response(orjson.dumps(content, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get("/versions", response_model=VersionsPublic, summary="List versions, newest first")
async def list_versions(db: DbDep, name: ModelNamePath, page: PageDep):
    # The hottest read: plain dicts from prebuilt Core statements, written by orjson in VersionPublic's
    # field order instead of validated into 100 models and dumped (0.2 ms of a ~2 ms request). The rows'
    # types come from the registry's columns; tests/api/test_api_versions.py checks the bytes validate
    # against VersionsPublic and equal what FastAPI's own serialisation gives.
    rows, total = await db.run(lambda s: repo.list_version_dicts(s, model_name=name, limit=page.limit,
                                                                 offset=page.offset))
    return fast_json({"data": rows, "count": total})  # rows are keyed in VersionPublic's field order


@router.get("/versions/{version}", response_model=VersionPublic, summary="Get a version")
async def get_version(db: DbDep, name: ModelNamePath, version: VersionPath):
    return await db.run(lambda s: VersionPublic.model_validate(repo.get_version(s, model_name=name, version=version)))


@router.get("/versions/{version}/metrics", response_model=MetricsPublic, summary="Metrics of a version")
async def version_metrics(db: DbDep, name: ModelNamePath, version: VersionPath):
    rows = await db.run(lambda s: repo.list_version_metric_dicts(s, model_name=name, version=version))
    return {"data": rows, "count": len(rows)}


@router.get("/versions/{version}/lineage", response_model=LineageGraph,
            summary="Provenance of a version: its artifact and every ancestor")
async def version_lineage(db: DbDep, name: ModelNamePath, version: VersionPath):
    def graph(session: Session) -> dict:
        lineage = repo.version_lineage(session, model_name=name, version=version)
        return version_graph(lineage["version"], lineage)

    return await db.run(graph)


@router.get("/aliases/{alias}", response_model=VersionPublic, summary="The version an alias points at")
async def get_alias(db: DbDep, name: ModelNamePath, alias: AliasPath):
    return await db.run(lambda s: VersionPublic.model_validate(repo.get_version_by_alias(s, model_name=name,
                                                                                         alias=alias)))


@router.put("/aliases/{alias}", response_model=VersionPublic, dependencies=[AdminDep],
            summary="Point an alias at a version if every promotion gate holds (409 lists failed gates)")
async def set_alias(db: DbDep, name: ModelNamePath, alias: AliasPath, body: AliasSet):
    gates = [Gate(**g.model_dump()) for g in body.gates]

    def point(session: Session) -> VersionPublic:
        row = repo.set_alias(session, model_name=name, version=body.version, alias=alias, gates=gates).version
        session.expire(row.model, ["aliases"])  # the alias list may have been loaded before the change
        return VersionPublic.model_validate(row)

    return await db.run(point)


@router.delete("/aliases/{alias}", status_code=204, response_class=Response, dependencies=[AdminDep],
               summary="Remove an alias")
async def remove_alias(db: DbDep, name: ModelNamePath, alias: AliasPath):
    await db.run(lambda s: repo.remove_alias(s, model_name=name, alias=alias))
    return Response(status_code=204)


@router.get("/compare", response_model=ComparePublic,
            summary="Versions on two metrics with their Pareto front (e.g. x=artifact_bytes, y=accuracy)")
async def compare(db: DbDep, name: ModelNamePath, x: MetricQuery, y: MetricQuery,
                  minimize_x: bool = True, maximize_y: bool = True, host: HostQuery = None):
    return await db.run(lambda s: compare_versions(s, model_name=name, x_metric=x, y_metric=y,
                                                   minimize_x=minimize_x, maximize_y=maximize_y, host=host))
