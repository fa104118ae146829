"""Request and response bodies, one family per entity: `XCreate`, `XUpdate`, `XPublic`, `XsPublic(data, count)`.

Request bodies forbid unknown keys (a typo fails with 422 instead of being ignored) and bound every
string, so an oversized input is refused by validation before it reaches the database. Response models
read ORM rows directly (`from_attributes`). The body of `POST /runs` is `flows.recipe.AnyRecipe` itself (a union keyed on `task`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from registry.repository.gates import Gate

# Same rule as registry.repository.models.NAME_RE, stated here so OpenAPI documents it.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,99}$"  # registry.repository.versions.ALIAS_RE: never a version number
METRIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

ModelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=200)]
AliasName = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN, max_length=100)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["model 'mnist-mlp' not found; list models with GET /models"])
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---- models -------------------------------------------------------------------------------------------
class ModelCreate(_Body):
    name: ModelName
    description: Description | None = None


class ModelUpdate(_Body):
    description: Description | None = None


class ModelPublic(_Row):
    id: int
    name: str
    description: str | None
    archived: bool
    created_at: datetime


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


# ---- versions -----------------------------------------------------------------------------------------
class VersionPublic(_Row):
    id: int
    model_name: str
    version: int
    status: str
    artifact_id: int
    run_id: int | None
    description: str | None
    created_at: datetime
    aliases: list[str]


class VersionsPublic(BaseModel):
    data: list[VersionPublic]
    count: int


GateCreate = Gate  # one definition of a promotion gate (registry/repository/gates.py)


class AliasSet(_Body):
    version: int = Field(ge=1, le=2**31 - 1)
    gates: list[GateCreate] = Field(default_factory=list, max_length=50)


# ---- runs ---------------------------------------------------------------------------------------------
class StagePublic(_Row):
    id: int
    name: str
    status: str
    params_hash: str | None
    cache_key: str | None
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    outputs: dict[str, Any] | None


class MetricPublic(_Row):
    id: int
    name: str
    value: float
    step: int | None
    stage: str | None
    run_id: int | None
    stage_run_id: int | None
    artifact_id: int | None
    version_id: int | None
    created_at: datetime


class MetricsPublic(BaseModel):
    data: list[MetricPublic]
    count: int


class ArtifactPublic(_Row):
    id: int
    kind: str
    sha256: str
    bytes: int
    format: str
    is_dir: bool
    stage_run_id: int | None
    metadata: dict[str, Any] | None = Field(validation_alias="meta")
    created_at: datetime


class ArtifactsPublic(BaseModel):
    data: list[ArtifactPublic]
    count: int


class RunPublic(_Row):
    id: int
    flow_run_id: str | None
    recipe_hash: str
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    git_commit: str | None
    error: str | None
    heartbeat_at: datetime | None = Field(None, description="last sign of life of the process running it")
    resumed_from_id: int | None = Field(None, description="the crashed run of the same recipe this one resumed")


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class RunDetail(RunPublic):
    recipe: dict[str, Any]
    library_versions: dict[str, Any] | None
    stages: list[StagePublic]
    metrics: list[MetricPublic] = Field(description="the first METRICS_INLINE metrics; page the rest with "
                                                    "GET /runs/{id}/metrics")
    metrics_count: int
    artifacts: list[ArtifactPublic]


class RunTriggered(BaseModel):
    run_id: int = Field(description="registry run id (GET /runs/{run_id})")
    flow_run_id: str = Field(description="Prefect flow run id")
    deployment: str
    status: str


# ---- lineage and comparison ---------------------------------------------------------------------------
class LineageGraph(BaseModel):
    """A directed graph: artifacts (and versions/runs where known) as nodes, parent -> child as edges."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class ComparePoint(BaseModel):
    version: int
    x: float
    y: float
    pareto: bool = Field(description="on the Pareto front of the two metrics")


class ComparePublic(BaseModel):
    model_name: str
    x_metric: str
    y_metric: str
    minimize_x: bool
    maximize_y: bool
    data: list[ComparePoint] = Field(description="every ready version that has both metrics")
    front: list[int] = Field(description="version numbers on the Pareto front, best x first")
    host: str | None = Field(None, description="with a timing metric (latency, throughput) on either axis: the "
                             "host context (fingerprint) every version shown was measured on; null otherwise")
    excluded: list[int] = Field([], description="versions with both metrics left out: measured on another host")
    note: str | None = Field(None, description="why versions were left out, when any were")


# ---- health -------------------------------------------------------------------------------------------
class Check(BaseModel):
    ok: bool
    detail: str


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadinessPublic(BaseModel):
    ready: bool
    checks: dict[str, Check]
