"""Versions of a model: list, get, metrics, lineage; aliases set/removed through the registry's promotion
gates (a failed gate is 409 with `details.failures`); compare / Pareto front on two metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.auth import AdminDep, ReadDep
from api.compare import compare_versions
from api.deps import PageDep, SessionDep
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
from registry.repository import metrics as metrics_repo
from registry.repository import versions as repo
from registry.repository.gates import Gate

router = APIRouter(prefix="/models/{name}", tags=["versions"], dependencies=[ReadDep])
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="version number")]
AliasPath = Annotated[str, Path(pattern=ALIAS_PATTERN, max_length=100, description="alias, e.g. production")]
MetricQuery = Annotated[str, Query(pattern=METRIC_PATTERN, max_length=200)]


@router.get("/versions", response_model=VersionsPublic, summary="List versions, newest first")
def list_versions(session: SessionDep, name: ModelNamePath, page: PageDep):
    # plain dicts, validated once by the response_model: ~5x cheaper than ORM rows for a 100-row page
    rows, total = repo.list_version_dicts(session, model_name=name, limit=page.limit, offset=page.offset)
    return {"data": rows, "count": total}


@router.get("/versions/{version}", response_model=VersionPublic, summary="Get a version")
def get_version(session: SessionDep, name: ModelNamePath, version: VersionPath):
    return repo.get_version(session, model_name=name, version=version)


@router.get("/versions/{version}/metrics", response_model=MetricsPublic, summary="Metrics of a version")
def version_metrics(session: SessionDep, name: ModelNamePath, version: VersionPath):
    version_id = repo.get_version_id(session, model_name=name, version=version)
    rows = metrics_repo.list_metrics(session, version_id=version_id)
    return MetricsPublic(data=rows, count=len(rows))


@router.get("/versions/{version}/lineage", response_model=LineageGraph,
            summary="Provenance of a version: its artifact and every ancestor")
def version_lineage(session: SessionDep, name: ModelNamePath, version: VersionPath):
    lineage = repo.version_lineage(session, model_name=name, version=version)
    return version_graph(lineage["version"], lineage)


@router.get("/aliases/{alias}", response_model=VersionPublic, summary="The version an alias points at")
def get_alias(session: SessionDep, name: ModelNamePath, alias: AliasPath):
    return repo.get_version_by_alias(session, model_name=name, alias=alias)


@router.put("/aliases/{alias}", response_model=VersionPublic, dependencies=[AdminDep],
            summary="Point an alias at a version if every promotion gate holds (409 lists failed gates)")
def set_alias(session: SessionDep, name: ModelNamePath, alias: AliasPath, body: AliasSet):
    gates = [Gate(**g.model_dump()) for g in body.gates]
    row = repo.set_alias(session, model_name=name, version=body.version, alias=alias, gates=gates).version
    session.expire(row.model, ["aliases"])  # the alias list may have been loaded before the change
    return row


@router.delete("/aliases/{alias}", status_code=204, response_class=Response, dependencies=[AdminDep],
               summary="Remove an alias")
def remove_alias(session: SessionDep, name: ModelNamePath, alias: AliasPath):
    repo.remove_alias(session, model_name=name, alias=alias)
    return Response(status_code=204)


@router.get("/compare", response_model=ComparePublic,
            summary="Versions on two metrics with their Pareto front (e.g. x=artifact_bytes, y=accuracy)")
def compare(session: SessionDep, name: ModelNamePath, x: MetricQuery, y: MetricQuery,
            minimize_x: bool = True, maximize_y: bool = True):
    return compare_versions(session, model_name=name, x_metric=x, y_metric=y, minimize_x=minimize_x,
                            maximize_y=maximize_y)
