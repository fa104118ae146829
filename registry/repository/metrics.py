"""Metrics: named float values attached to a run, a stage, an artifact and/or a model version.
`log_metrics` inserts a batch in one statement (executemany), so 100k rows take seconds, not minutes."""

from __future__ import annotations

import math
from numbers import Real

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from registry.errors import InvalidState
from registry.models import Metric, utcnow


def log_metrics(session: Session, *, metrics: dict[str, float], run_id: int | None = None,
                stage_run_id: int | None = None, artifact_id: int | None = None, version_id: int | None = None,
                stage: str | None = None, step: int | None = None) -> int:
    """Insert one row per (name, value); returns how many. Values must be finite real numbers."""
    if run_id is None and stage_run_id is None and artifact_id is None and version_id is None:
        raise InvalidState("log_metrics needs at least one of run_id, stage_run_id, artifact_id, version_id")
    rows = []
    now = utcnow()
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise InvalidState(f"metric names must be non-empty strings, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
            raise InvalidState(f"metric {name!r} must be a finite number, got {value!r}; "
                               "log NaN/inf as a failed stage instead")
        rows.append(dict(name=name, value=float(value), step=step, stage=stage, run_id=run_id,
                         stage_run_id=stage_run_id, artifact_id=artifact_id, version_id=version_id, created_at=now))
    if rows:
        session.execute(insert(Metric.__table__), rows)  # Core executemany: no ORM bookkeeping per row
    return len(rows)


def list_metrics(session: Session, *, run_id: int | None = None, version_id: int | None = None,
                 artifact_id: int | None = None, stage_run_id: int | None = None,
                 name: str | None = None) -> list[Metric]:
    """Metrics matching every given filter, in insertion order."""
    stmt = select(Metric).order_by(Metric.id)
    for column, value in ((Metric.run_id, run_id), (Metric.version_id, version_id),
                          (Metric.artifact_id, artifact_id), (Metric.stage_run_id, stage_run_id),
                          (Metric.name, name)):
        if value is not None:
            stmt = stmt.where(column == value)
    return list(session.scalars(stmt))


def latest_values(session: Session, *, artifact_id: int | None = None,
                  version_id: int | None = None) -> dict[str, float]:
    """{name: most recently logged value} over metrics of an artifact and/or a version."""
    cond = []
    if artifact_id is not None:
        cond.append(Metric.artifact_id == artifact_id)
    if version_id is not None:
        cond.append(Metric.version_id == version_id)
    if not cond:
        return {}
    out: dict[str, float] = {}
    for name, value in session.execute(select(Metric.name, Metric.value).where(or_(*cond)).order_by(Metric.id)):
        out[name] = value
    return out
