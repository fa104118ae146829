"""ORM rows of the registry (SQLAlchemy 2 typed declarative). The schema itself is owned by Alembic
(`registry/migrations/`); a test checks that autogenerate finds no difference between the two.

Entity map:

    Model 1─* ModelVersion *─1 Artifact *─1 StageRun *─1 PipelineRun
      1─* ModelAlias ─1 ModelVersion        Artifact 1─* ArtifactEdge (parent -> child, stage)
    Metric -> (run | stage_run | artifact | version), ApiToken (hashed API bearer tokens)

Conventions: integer surrogate keys; timestamps are timezone-aware UTC set by Python (`utcnow`);
JSON columns hold plain dicts/lists; statuses are short strings with their allowed values as tuples
below (validated in the repository, so a new value needs no migration).
`Artifact.meta` is the JSON column named `metadata` (the attribute name `metadata` is reserved by
SQLAlchemy's declarative base).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ARTIFACT_KINDS = ("dataset", "teacher", "soft-labels", "checkpoint", "export", "plot", "report")
# `crashed`: set by reconciliation (repository/reconcile.py) when the run's process or Prefect flow run
# is gone; not terminal, so a run wrongly declared crashed revives on its next heartbeat.
RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "crashed")
RUN_TERMINAL = ("completed", "failed", "cancelled")
STAGE_STATUSES = ("running", "completed", "failed", "skipped", "cached")
VERSION_STATUSES = ("ready", "archived")

# Deterministic constraint names so Alembic migrations can drop/alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """DateTime(timezone=True) that always returns aware UTC datetimes, also on SQLite (which stores
    naive text): values are converted to UTC on the way in and tagged UTC on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={getattr(self, 'id', None)}>"


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[ModelVersion]] = relationship(back_populates="model", cascade="all, delete-orphan",
                                                        passive_deletes=True, order_by="ModelVersion.version")
    aliases: Mapped[list[ModelAlias]] = relationship(back_populates="model", cascade="all, delete-orphan",
                                                     passive_deletes=True, lazy="selectin")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # eager: `model_name` and `aliases` stay readable on rows returned after the session closed
    model: Mapped[Model] = relationship(back_populates="versions", lazy="joined")
    artifact: Mapped[Artifact] = relationship()
    run: Mapped[PipelineRun | None] = relationship()

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def aliases(self) -> list[str]:
        return sorted(a.alias for a in self.model.aliases if a.version_id == self.id)


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    model: Mapped[Model] = relationship(back_populates="aliases")
    version: Mapped[ModelVersion] = relationship()


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    flow_run_name: Mapped[str | None] = mapped_column(String(200))  # Prefect's run name, e.g. omega275-fangorn
    flow_run_url: Mapped[str | None] = mapped_column(String(1024))  # the flow run's page in the Prefect UI
    recipe: Mapped[dict[str, Any]]
    recipe_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    git_commit: Mapped[str | None] = mapped_column(String(64))
    library_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None]  # last sign of life of the process running it
    worker: Mapped[str | None] = mapped_column(String(255))  # "host:pid:process start" of that process
    resumed_from_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="SET NULL"))

    stages: Mapped[list[StageRun]] = relationship(back_populates="run", order_by="StageRun.id")


class StageRun(Base):
    __tablename__ = "stage_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="running")
    params_hash: Mapped[str | None] = mapped_column(String(64))
    cache_key: Mapped[str | None] = mapped_column(String(128), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    run: Mapped[PipelineRun] = relationship(back_populates="stages")


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    uri: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(64))
    is_dir: Mapped[bool] = mapped_column(Boolean, default=False)
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id", ondelete="SET NULL"),
                                                     index=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    stage_run: Mapped[StageRun | None] = relationship()


class ArtifactEdge(Base):
    __tablename__ = "artifact_edges"
    __table_args__ = (UniqueConstraint("parent_id", "child_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str | None] = mapped_column(String(100))


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_name_version", "name", "version_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(Integer)
    stage: Mapped[str | None] = mapped_column(String(100))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True)
    stage_run_id: Mapped[int | None] = mapped_column(ForeignKey("stage_runs.id", ondelete="CASCADE"),
                                                     index=True)
    artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"),
                                                   index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
