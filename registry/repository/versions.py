"""Model versions (numbered 1, 2, ... per model), aliases (`production`, `staging`: one version each),
gated promotion, and the Pareto front of versions over two metrics.

Version numbers stay unique under concurrency: `create_version` locks the model row
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite transactions are already serialised by BEGIN IMMEDIATE)
and the (model_id, version) unique constraint backs it up with a savepoint retry. They are also dense:
a model's versions are exactly 1..N (max + 1 under that lock, and nothing deletes a version: retire one
with status `archived`), which `list_version_dicts` uses to page in O(page) instead of O(offset).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, DateTime, bindparam, func, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.errors import AlreadyExists, GateFailed, InvalidState, NotFound
from registry.models import VERSION_STATUSES, Artifact, Metric, Model, ModelAlias, ModelVersion, utcnow
from registry.repository._util import check_page, paginate
from registry.repository.artifacts import artifact_lineage, get_artifact
from registry.repository.gates import Gate, evaluate_gates
from registry.repository.models import get_model

ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")
ARTIFACT_BYTES = "artifact_bytes"  # pseudo-metric for pareto_front: the version artifact's size in bytes
_RETRIES = 5


def create_version(session: Session, *, model_name: str, artifact_id: int, run_id: int | None = None,
                   description: str | None = None) -> ModelVersion:
    """Register `artifact_id` as the next version (max + 1) of `model_name`."""
    get_artifact(session, artifact_id=artifact_id)
    model_id = get_model(session, name=model_name).id
    for _attempt in range(_RETRIES):
        session.execute(select(Model.id).where(Model.id == model_id).with_for_update())
        number = (session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model_id))
                  or 0) + 1
        try:
            with session.begin_nested():
                row = ModelVersion(model_id=model_id, version=number, artifact_id=artifact_id, run_id=run_id,
                                   description=description, status="ready")
                session.add(row)
                session.flush()
            return row
        except IntegrityError:
            continue  # another transaction took this number between our read and insert: read again
    raise AlreadyExists(f"could not allocate a version number for model {model_name!r} after {_RETRIES} tries")


def get_version(session: Session, *, model_name: str, version: int) -> ModelVersion:
    row = session.scalar(select(ModelVersion).join(Model).where(Model.name == model_name,
                                                                ModelVersion.version == version))
    if row is None:
        get_model(session, name=model_name)  # NotFound for the model itself first
        raise NotFound(f"model {model_name!r} has no version {version}")
    return row


def get_latest_version(session: Session, *, model_name: str) -> ModelVersion:
    row = session.scalar(select(ModelVersion).join(Model).where(Model.name == model_name)
                         .order_by(ModelVersion.version.desc()).limit(1))
    if row is None:
        get_model(session, name=model_name)
        raise NotFound(f"model {model_name!r} has no versions yet")
    return row


def list_versions(session: Session, *, model_name: str, limit: int = 100,
                  offset: int = 0) -> tuple[list[ModelVersion], int]:
    """Newest first."""
    model = get_model(session, name=model_name)
    stmt = select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version.desc())
    return paginate(session, stmt, limit=limit, offset=offset)


# The read-hot paths (the API's version list and a version's metrics) run prebuilt Core statements with
# bound parameters: built once at import, so a request pays neither statement construction nor cache-key
# generation, and rows come back as tuples, not ORM objects. About 3x cheaper than the ORM query per page
# (bench/api_load.py); the results are the same plain values the ORM would give.
_versions, _models, _aliases, _metrics = (ModelVersion.__table__, Model.__table__, ModelAlias.__table__,
                                          Metric.__table__)
_VERSION_KEYS = ("id", "version", "status", "artifact_id", "run_id", "description", "created_at")
# a page's dict keys, in this order (the API's VersionPublic field order, so its JSON is written as is)
VERSION_PAGE_KEYS = ("id", "model_name", "version", "status", "artifact_id", "run_id", "description", "created_at",
                     "aliases")
_METRIC_KEYS = ("id", "name", "value", "step", "stage", "run_id", "stage_run_id", "artifact_id", "version_id",
                "created_at")
_MODEL_AND_NEWEST = select(_models.c.id, _models.c.name,
                           select(func.max(_versions.c.version)).where(_versions.c.model_id == _models.c.id)
                           .scalar_subquery()).where(_models.c.name == bindparam("name"))




def _columns(table, keys: tuple[str, ...], stored_times: bool) -> tuple:
    # `stored_times`: created_at read with the plain DateTime type, skipping UTCDateTime's per-row tagging
    # (about a quarter of a page's row handling): naive UTC on SQLite, as the driver gives it elsewhere
    return tuple(type_coerce(table.c[key], DateTime()) if stored_times and key == "created_at" else table.c[key]
                 for key in keys)


# each hot statement twice, keyed by `stored_times`
_VERSION_RANGE = {flag: select(*_columns(_versions, _VERSION_KEYS, flag))
                  .where(_versions.c.model_id == bindparam("model_id"), _versions.c.version <= bindparam("top"))
                  .order_by(_versions.c.version.desc()).limit(bindparam("limit")) for flag in (False, True)}
_VERSION_PAGE = {flag: select(*_columns(_versions, _VERSION_KEYS, flag))
                 .where(_versions.c.model_id == bindparam("model_id"))
                 .order_by(_versions.c.version.desc()).limit(bindparam("limit")).offset(bindparam("offset"))
                 for flag in (False, True)}
_VERSION_COUNT = select(func.count()).where(_versions.c.model_id == bindparam("model_id"))
_MODEL_ALIASES = select(_aliases.c.version_id, _aliases.c.alias).where(_aliases.c.model_id == bindparam("model_id"))
_VERSION_METRICS = {flag: select(*_columns(_metrics, _METRIC_KEYS, flag))
                    .join(_versions, _versions.c.id == _metrics.c.version_id)
                    .join(_models, _models.c.id == _versions.c.model_id)
                    .where(_models.c.name == bindparam("name"), _versions.c.version == bindparam("version"))
                    .order_by(_metrics.c.id) for flag in (False, True)}


def list_version_dicts(session: Session, *, model_name: str, limit: int = 100,
                       offset: int = 0) -> tuple[list[dict], int]:
    """`list_versions` as plain dicts (the fields of a version plus `model_name` and its sorted `aliases`,
    keyed in `VERSION_PAGE_KEYS` order), newest first, for read-only callers; NotFound as `list_versions`."""
    page = version_page(session, model_name=model_name, limit=limit, offset=offset)
    if page is None:
        get_model(session, name=model_name)  # raises the same NotFound as list_versions
    return page


def version_page(db: Session | Connection, *, model_name: str, limit: int = 100, offset: int = 0,
                 stored_times: bool = False) -> tuple[list[dict], int] | None:
    """One page of `list_version_dicts` read with prebuilt Core statements only, so `db` may be a Session or
    a bare Connection (the API's hot read path, `registry.session.read_scope`); None when there is no model
    `model_name`. With `stored_times` created_at comes as stored (naive UTC on SQLite, where UTCDateTime
    would tag it), for writers that treat naive times as UTC (orjson's OPT_NAIVE_UTC).

    Versions are numbered 1..N without gaps (module docstring), so the total is N, the newest number (an
    index lookup, not a count of N rows), and the page at `offset` is the version range
    (N - offset - limit, N - offset], read through the (model_id, version) index without walking past
    `offset` rows: a deep page costs what the first one does (on PostgreSQL 4 ms -> 2 ms at 10k versions).
    A page that comes back with a hole in it (a row deleted by hand, outside the registry) is read again
    with OFFSET and an exact count; pages below such a hole cannot tell and stay shifted by it, one more
    reason the registry never deletes a version."""
    check_page(limit, offset)
    found = db.execute(_MODEL_AND_NEWEST, {"name": model_name}).first()
    if found is None:
        return None
    model_id, model_name, newest = found
    total, top = newest or 0, (newest or 0) - offset
    page = (db.execute(_VERSION_RANGE[stored_times], {"model_id": model_id, "top": top, "limit": limit}).all()
            if top > 0 else [])
    expected = max(0, min(limit, top))
    if len(page) != expected or (page and (page[0][1], page[-1][1]) != (top, top - expected + 1)):
        total = db.execute(_VERSION_COUNT, {"model_id": model_id}).scalar_one()
        page = db.execute(_VERSION_PAGE[stored_times], {"model_id": model_id, "limit": limit,
                                                        "offset": offset}).all()
    rows = [{"id": vid, "model_name": model_name, "version": number, "status": status, "artifact_id": artifact_id,
             "run_id": run_id, "description": description, "created_at": created_at, "aliases": []}
            for vid, number, status, artifact_id, run_id, description, created_at in page]
    if rows:
        by_id = {r["id"]: r for r in rows}
        for version_id, alias in db.execute(_MODEL_ALIASES, {"model_id": model_id}):
            if version_id in by_id:
                by_id[version_id]["aliases"].append(alias)
        for row in rows:
            if row["aliases"]:
                row["aliases"].sort()  # in Python, like ModelVersion.aliases (not the database's collation)
    return rows, total


def list_version_metric_dicts(session: Session, *, model_name: str, version: int) -> list[dict]:
    """The metrics logged on `model_name` version `version` (not on its artifact), as plain dicts in
    insertion order: one statement; NotFound as `get_version` when the model or version does not exist."""
    rows = version_metric_rows(session, model_name=model_name, version=version)
    if not rows:
        get_version_id(session, model_name=model_name, version=version)  # a version without metrics: []
    return rows


def version_metric_rows(db: Session | Connection, *, model_name: str, version: int,
                        stored_times: bool = False) -> list[dict]:
    """`list_version_metric_dicts` with one prebuilt Core statement (`db` may be a bare Connection), and []
    alike for a version without metrics and one that does not exist; `stored_times` as in `version_page`."""
    result = db.execute(_VERSION_METRICS[stored_times], {"name": model_name, "version": version})
    return [dict(zip(_METRIC_KEYS, r, strict=True)) for r in result.all()]


def get_version_id(session: Session, *, model_name: str, version: int) -> int:
    """The row id of `model_name` version `version` (the same NotFound as `get_version`), without loading it."""
    version_id = session.scalar(select(ModelVersion.id).join(Model).where(Model.name == model_name,
                                                                          ModelVersion.version == version))
    if version_id is None:
        get_version(session, model_name=model_name, version=version)  # raises the model's or version's NotFound
    return version_id


def version_lineage(session: Session, *, model_name: str, version: int) -> dict:
    """A version's full provenance: {"version", "run", "nodes", "edges"} where nodes/edges are the
    artifact lineage of the version's artifact back to its roots (teacher, dataset)."""
    row = get_version(session, model_name=model_name, version=version)
    return {"version": row, "run": row.run, **artifact_lineage(session, artifact_id=row.artifact_id)}


def update_version(session: Session, *, model_name: str, version: int, description: str | None = None,
                   status: str | None = None) -> ModelVersion:
    row = get_version(session, model_name=model_name, version=version)
    if status is not None:
        if status not in VERSION_STATUSES:
            raise InvalidState(f"version status {status!r} is not one of {list(VERSION_STATUSES)}")
        if status == "archived" and _aliases_of(session, row):
            raise InvalidState(f"version {version} of {model_name!r} carries aliases {_aliases_of(session, row)}; "
                               "move or remove them before archiving it")
        row.status = status
    if description is not None:
        row.description = description
    session.flush()
    return row


def set_alias(session: Session, *, model_name: str, version: int, alias: str,
              gates: list[Gate] | None = None) -> ModelAlias:
    """Point `alias` at `version` if every gate holds; GateFailed (listing each failed gate) otherwise."""
    if not ALIAS_RE.match(alias or ""):
        raise InvalidState(f"alias {alias!r} is invalid: use lowercase letters, digits, '_' or '-' "
                           "starting with a letter (e.g. 'production')")
    row = get_version(session, model_name=model_name, version=version)
    if row.status != "ready":
        raise InvalidState(f"version {version} of {model_name!r} is {row.status!r}; only 'ready' versions "
                           "can carry an alias")
    failures = evaluate_gates(session, version=row, gates=gates)
    if failures:
        raise GateFailed(f"refused to set alias {alias!r} on {model_name!r} version {version}", failures)
    for _attempt in range(_RETRIES):
        existing = session.scalar(select(ModelAlias).where(ModelAlias.model_id == row.model_id,
                                                           ModelAlias.alias == alias).with_for_update())
        if existing is not None:
            existing.version_id, existing.updated_at = row.id, utcnow()
            session.flush()
            return existing
        try:
            with session.begin_nested():
                new = ModelAlias(model=row.model, alias=alias, version_id=row.id)  # keeps model.aliases current
                session.add(new)
                session.flush()
            return new
        except IntegrityError:
            continue  # created concurrently: update it instead
    raise AlreadyExists(f"alias {alias!r} of {model_name!r} kept changing concurrently; try again")


def remove_alias(session: Session, *, model_name: str, alias: str) -> None:
    model = get_model(session, name=model_name)
    row = session.scalar(select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias))
    if row is None:
        raise NotFound(f"model {model_name!r} has no alias {alias!r}")
    model.aliases.remove(row)  # delete-orphan cascade deletes the row; the loaded collection stays current
    session.flush()


def get_version_by_alias(session: Session, *, model_name: str, alias: str) -> ModelVersion:
    row = session.scalar(select(ModelVersion).join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
                         .join(Model, Model.id == ModelAlias.model_id)
                         .where(Model.name == model_name, ModelAlias.alias == alias))
    if row is None:
        get_model(session, name=model_name)
        raise NotFound(f"model {model_name!r} has no alias {alias!r}; set one with set_alias / "
                       f"PUT /models/{model_name}/aliases/{alias}")
    return row


def list_aliases(session: Session, *, model_name: str) -> dict[str, int]:
    """{alias: version number}."""
    model = get_model(session, name=model_name)
    rows = session.execute(select(ModelAlias.alias, ModelVersion.version)
                           .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
                           .where(ModelAlias.model_id == model.id).order_by(ModelAlias.alias))
    return {alias: number for alias, number in rows}


@dataclass(frozen=True)
class ParetoPoint:
    version: ModelVersion
    x: float
    y: float


def timing_metric(name: str) -> bool:
    """Latency and throughput metrics: they measure the machine as much as the model, so they compare
    only between versions measured on the same host context (the export's `measured_on.fingerprint`:
    cpu model, cpu count, timing threads, device, torch)."""
    n = name.lower()
    return n.startswith("latency") or "_ms" in n or "_per_s" in n


def measured_hosts(session: Session, model_id: int) -> dict[int, str | None]:
    """{version id: host fingerprint its metrics were measured on, None when unknown} for every version."""
    fingerprint = Artifact.meta["measured_on"]["fingerprint"].as_string()  # read by the database
    return dict(session.execute(select(ModelVersion.id, fingerprint)
                                .join(Artifact, Artifact.id == ModelVersion.artifact_id)
                                .where(ModelVersion.model_id == model_id)).all())


@dataclass(frozen=True)
class LikeForLike:
    """Which versions may be compared on some metrics. With no timing metric among them every version
    compares (`host` None). With one, only versions measured on `host` are `kept`; `excluded` are the
    others (another host, or none recorded). `note` says what a reader must know, else None."""

    host: str | None
    kept: frozenset[int]
    excluded: frozenset[int]
    note: str | None = None


def like_for_like(session: Session, model_id: int, version_ids: set[int], metrics: tuple[str, ...],
                  host: str | None = None) -> LikeForLike:
    """Restrict `version_ids` to one host context when any of `metrics` is a timing metric: `host` if
    given, else the host of the newest version among them that recorded one. When none recorded a host
    (registered before hosts were stored, or by hand), all are kept and the note says they may not be
    comparable."""
    if not any(timing_metric(m) for m in metrics):
        return LikeForLike(None, frozenset(version_ids), frozenset())
    hosts = measured_hosts(session, model_id)
    if host is None:
        host = next((hosts[v] for v in sorted(version_ids, reverse=True) if hosts.get(v)), None)
        if host is None:
            return LikeForLike(None, frozenset(version_ids), frozenset(), note=(
                "no host context recorded on these versions: their timings may come from different machines"))
    kept = frozenset(v for v in version_ids if hosts.get(v) == host)
    excluded = frozenset(version_ids) - kept
    note = None
    if excluded:
        n = len(excluded)
        note = (f"{n} version{'s' if n != 1 else ''} left out: measured on another host context than {host} "
                "(or none recorded), so their timings are not comparable")
    return LikeForLike(host, kept, excluded, note)


def pareto_select(points: Iterable[tuple[int, float, float]], *, minimize_x: bool = True,
                  maximize_y: bool = True) -> list[tuple[int, float, float]]:
    """The (key, x, y) points no other point dominates, best x first; of equal points the smaller key
    (the older version) wins. The one definition of the front: `pareto_front` applies it to what it reads,
    the API's compare and the UI's plot to values they already hold."""
    sx, sy = (1 if minimize_x else -1), (-1 if maximize_y else 1)  # sort keys: smaller is better
    front, best = [], None
    for p in sorted(points, key=lambda p: (sx * p[1], sy * p[2], p[0])):
        if best is None or sy * p[2] < best:
            front.append(p)
            best = sy * p[2]
    return front


def pareto_front(session: Session, *, model_name: str, x_metric: str, y_metric: str, minimize_x: bool = True,
                 maximize_y: bool = True, host: str | None = None) -> list[ParetoPoint]:
    """Versions not dominated on (x, y), sorted from best x to worst x.

    Values are the latest metric logged on the version or its artifact; `artifact_bytes` means the
    artifact's stored size. Versions missing either metric and archived versions are left out, and so,
    when x or y is a timing metric, are versions measured on another host context than `host` (default:
    the newest version's; see `like_for_like`). Two set-based queries for the values, then only the
    front's rows are loaded."""
    model = get_model(session, name=model_name)
    values = _metric_table(session, model.id, {x_metric, y_metric})
    both = {vid for vid, vals in values.items() if x_metric in vals and y_metric in vals}
    kept = like_for_like(session, model.id, both, (x_metric, y_metric), host).kept
    front = pareto_select([(vid, values[vid][x_metric], values[vid][y_metric]) for vid in kept],
                          minimize_x=minimize_x, maximize_y=maximize_y)
    rows = {v.id: v for v in session.scalars(select(ModelVersion).where(ModelVersion.id.in_([p[0] for p in front])))}
    return [ParetoPoint(rows[vid], x, y) for vid, x, y in front]


def _metric_table(session: Session, model_id: int, names: set[str]) -> dict[int, dict[str, float]]:
    """{version id: {metric: latest value}} for the model's ready versions (metrics on the version or
    on its artifact; the most recently logged one wins)."""
    ready = (ModelVersion.model_id == model_id, ModelVersion.status == "ready")
    table: dict[int, dict[str, float]] = {}
    if ARTIFACT_BYTES in names:
        for vid, size in session.execute(select(ModelVersion.id, Artifact.bytes)
                                         .join(Artifact, Artifact.id == ModelVersion.artifact_id).where(*ready)):
            table.setdefault(vid, {})[ARTIFACT_BYTES] = float(size)
    found = []
    for link in (Metric.version_id == ModelVersion.id, Metric.artifact_id == ModelVersion.artifact_id):
        found += session.execute(select(Metric.id, ModelVersion.id, Metric.name, Metric.value).join(
            ModelVersion, link).where(Metric.name.in_(names), *ready)).all()
    for _mid, vid, name, value in sorted(found):  # by metric id: later rows overwrite earlier ones
        table.setdefault(vid, {})[name] = value
    return table


def _aliases_of(session: Session, row: ModelVersion) -> list[str]:
    return list(session.scalars(select(ModelAlias.alias).where(ModelAlias.version_id == row.id)))
