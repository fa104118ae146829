"""Promotion gates: conditions on a version's metrics that must hold before an alias moves to it.

A gate compares either the version's own value (`relative_to=None`: "accuracy >= 0.97") or its change
against the parent (`relative_to="parent"`: value(version) - value(parent) op threshold). The parent
value is the nearest ancestor in the artifact lineage that has this metric (e.g. the teacher a student
was distilled from), so "accuracy drops at most 1 point vs parent" is `Gate.max_drop("accuracy", 0.01)`
== Gate(metric="accuracy", op=">=", value=-0.01, relative_to="parent").

Example (YAML recipe / API body):
    gates: [{metric: accuracy, op: ">=", value: -0.01, relative_to: parent}, {metric: bytes, op: "<=", value: 2e6}]
"""

from __future__ import annotations

import operator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.models import ArtifactEdge, Metric, ModelVersion

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}$", description="the metric to test")
    op: Literal["<=", ">=", "<", ">"] = Field(">=", description="metric op value")
    value: float = Field(..., allow_inf_nan=False, description="the threshold (a change when relative_to is set)")
    relative_to: Literal["parent"] | None = Field(None, description="parent: compare metric - parent's metric")

    @classmethod
    def max_drop(cls, metric: str, drop: float) -> Gate:
        """value(version) >= value(parent) - drop."""
        return cls(metric=metric, op=">=", value=-abs(drop), relative_to="parent")

    def describe(self) -> str:
        lhs = f"{self.metric} change vs parent" if self.relative_to else self.metric
        return f"{lhs} {self.op} {self.value:g}"


def metric_value(session: Session, *, artifact_id: int, name: str, version_id: int | None = None) -> float | None:
    """Latest value of `name` logged on the artifact, or on a version (given or any) built from it."""
    conds = [Metric.artifact_id == artifact_id,
             Metric.version_id.in_(select(ModelVersion.id).where(ModelVersion.artifact_id == artifact_id))]
    if version_id is not None:
        conds.append(Metric.version_id == version_id)
    return session.scalar(select(Metric.value).where(Metric.name == name, or_(*conds))
                          .order_by(Metric.id.desc()).limit(1))


def parent_value(session: Session, *, artifact_id: int, name: str, max_depth: int = 100) -> tuple[int, float] | None:
    """(ancestor artifact id, value) of the nearest lineage ancestor having metric `name`, or None."""
    seen, frontier = {artifact_id}, [artifact_id]
    for _ in range(max_depth):
        parents = list(session.scalars(select(ArtifactEdge.parent_id).where(ArtifactEdge.child_id.in_(frontier))
                                       .order_by(ArtifactEdge.parent_id)))
        frontier = [p for p in dict.fromkeys(parents) if p not in seen]
        if not frontier:
            return None
        seen.update(frontier)
        for pid in frontier:
            value = metric_value(session, artifact_id=pid, name=name)
            if value is not None:
                return pid, value
    return None


def evaluate_gates(session: Session, *, version: ModelVersion, gates: list[Gate] | None) -> list[str]:
    """One human-readable failure string per gate that does not hold (empty list: promotion allowed)."""
    failures = []
    for gate in gates or []:
        gate = gate if isinstance(gate, Gate) else Gate.model_validate(gate)
        value = metric_value(session, artifact_id=version.artifact_id, name=gate.metric, version_id=version.id)
        if value is None:
            failures.append(f"{gate.describe()}: no {gate.metric!r} metric recorded for version {version.version}")
            continue
        subject = value
        if gate.relative_to == "parent":
            found = parent_value(session, artifact_id=version.artifact_id, name=gate.metric)
            if found is None:
                failures.append(f"{gate.describe()}: no ancestor of version {version.version} has a "
                                f"{gate.metric!r} metric to compare with")
                continue
            subject = value - found[1]
            where = f"{value:g} vs parent artifact {found[0]} at {found[1]:g}: change {subject:+g}"
        else:
            where = f"version {version.version} has {value:g}"
        if not OPS[gate.op](subject, gate.value):
            failures.append(f"{gate.describe()} failed: {where}")
    return failures
