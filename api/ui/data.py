"""What each UI page shows, read in one transaction: plain dicts for the templates, no ORM rows escape.

The model page is the heavy one: sorting 10k versions by a metric needs every version's value, so it
reads the whole table of (version, status, bytes, technique, the metrics on show) in three set-based
queries (joins on the model id, never 10k-item IN lists), sorts and slices in Python, and plots the same
values. The Pareto front is `registry.repository.pareto_select` (the rule of `pareto_front`: ready versions only;
archived ones are plotted but never on the front) applied to the values already read: `pareto_front` itself
would read every metric again (~170 ms at 10k versions).
Metric values follow the registry's rule: the latest value logged on the version or on its artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, func, select, union
from sqlalchemy.orm import Session

from registry.models import Artifact, Metric, ModelAlias, ModelVersion
from registry.repository import (
    ARTIFACT_BYTES,
    get_model,
    like_for_like,
    list_aliases,
    list_models,
    pareto_select,
)

QUALITY_METRICS = ("accuracy", "perplexity", "agreement", "top1", "f1")  # first one present is shown
LATENCY_METRICS = ("latency_p50_ms", "latency_ms", "latency_p95_ms")
LOWER_IS_BETTER = ("perplexity", "loss", "latency", "bytes", "kl", "error", "ppl")  # substrings of names
SORT_KEYS = ("version", "status", "quality", "bytes", "latency", "technique")

_v, _m, _a = ModelVersion.__table__, Metric.__table__, Artifact.__table__
_VERSIONS = (select(_v.c.id, _v.c.version, _v.c.status, _v.c.artifact_id, _a.c.bytes)
             .join(_a, _a.c.id == _v.c.artifact_id).where(_v.c.model_id == bindparam("model_id")))
_TECHNIQUES = select(_a.c.id, _a.c["metadata"]["technique"].as_string()).where(  # JSON field read by the database
    _a.c.id.in_(select(_v.c.artifact_id).where(_v.c.model_id == bindparam("model_id")).scalar_subquery()))
_NAMES = union(
    select(_m.c.name).join(_v, _v.c.id == _m.c.version_id).where(_v.c.model_id == bindparam("model_id")),
    select(_m.c.name).join(_v, _v.c.artifact_id == _m.c.artifact_id).where(_v.c.model_id == bindparam("model_id")))


def lower_is_better(metric: str) -> bool:
    return any(part in metric.lower() for part in LOWER_IS_BETTER)


def models_overview(session: Session, *, limit: int, offset: int) -> tuple[list[dict], int]:
    """Each model with its newest version number, version count and aliases ({alias: version})."""
    models, total = list_models(session, limit=limit, offset=offset)
    ids = [m.id for m in models]
    newest = dict(session.execute(select(ModelVersion.model_id, func.max(ModelVersion.version))
                                  .where(ModelVersion.model_id.in_(ids)).group_by(ModelVersion.model_id)).all())
    aliases: dict[int, dict[str, int]] = {}
    for model_id, alias, number in session.execute(
            select(ModelAlias.model_id, ModelAlias.alias, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
            .where(ModelAlias.model_id.in_(ids)).order_by(ModelAlias.alias)):
        aliases.setdefault(model_id, {})[alias] = number
    return [{"name": m.name, "description": m.description, "latest": newest.get(m.id),
             "aliases": aliases.get(m.id, {})} for m in models], total


def metric_names(session: Session, model_id: int) -> list[str]:
    """Every metric name logged on the model's versions or their artifacts, sorted."""
    return sorted(name for (name,) in session.execute(_NAMES, {"model_id": model_id}))


def _latest(session: Session, names: set[str], *, model_id: int | None = None,
            version_ids: list[int] | None = None) -> dict[int, dict[str, float]]:
    """{version id: {metric: latest value}} over every version of the model (any status), or over the
    versions `version_ids` (one page of the table)."""
    if not names:
        return {}
    where = _v.c.model_id == model_id if version_ids is None else _v.c.id.in_(version_ids)
    found = []
    for link in (_m.c.version_id == _v.c.id, _m.c.artifact_id == _v.c.artifact_id):
        found += session.execute(select(_m.c.id, _v.c.id, _m.c.name, _m.c.value).join(_v, link)
                                 .where(where, _m.c.name.in_(sorted(names)))).all()
    found.sort(key=itemgetter(0))  # by metric id: later rows overwrite earlier ones
    table: dict[int, dict[str, float]] = {}
    for _mid, vid, name, value in found:
        table.setdefault(vid, {})[name] = value
    return table


@dataclass(frozen=True)
class ModelView:
    """The model page's request: sort column and direction, page, plot axes (None: defaults)."""

    sort: str = "version"
    descending: bool = True
    page: int = 1
    per_page: int = 50
    x: str | None = None
    y: str | None = None


def _pick(names: list[str], preferred: tuple[str, ...], contains: str | None = None) -> str | None:
    for name in preferred:
        if name in names:
            return name
    return next((n for n in names if contains and contains in n), None)


def sort_rows(rows: list[dict], sort: str, descending: bool) -> list[dict]:
    """Rows by `sort` (ties: newest version first); rows without a value last in either direction."""
    present = [r for r in rows if r[sort] is not None]
    present.sort(key=lambda r: (r[sort], r["version"]), reverse=descending)
    missing = sorted((r for r in rows if r[sort] is None), key=lambda r: r["version"], reverse=True)
    return present + missing


def _version_rows(session: Session, model_id: int, aliases: dict[str, int], columns: dict[str, str | None],
                  values: dict[int, dict[str, float]]) -> list[dict]:
    """One dict per version; `columns` maps row keys (quality, latency, x, y) to metric names."""
    technique = dict(session.execute(_TECHNIQUES, {"model_id": model_id}).all())
    by_version = dict(_aliases_by_version(aliases))
    rows = []
    for vid, number, status, artifact_id, size in session.execute(_VERSIONS, {"model_id": model_id}):
        vals = values.get(vid, {})
        vals[ARTIFACT_BYTES] = float(size)
        row = {"id": vid, "version": number, "status": status, "bytes": size, "technique": technique.get(artifact_id),
               "aliases": by_version.get(number, [])}
        row.update({key: vals.get(metric) for key, metric in columns.items()})
        rows.append(row)
    return rows


def model_page(session: Session, *, name: str, view: ModelView) -> dict[str, Any]:
    """Versions table (one page, sorted over all versions) and the plot's points and front.

    Only the metrics that order rows or place points are read for every version (x, y and the sort
    column); the table's other metric columns are read for the page's 50 rows alone."""
    model = get_model(session, name=name)
    names = metric_names(session, model.id)
    quality, latency = _pick(names, QUALITY_METRICS), _pick(names, LATENCY_METRICS, contains="latency")
    axes = [ARTIFACT_BYTES, *names]
    x = view.x if view.x in axes else ARTIFACT_BYTES
    y = view.y if view.y in axes else (quality or (names[0] if names else ARTIFACT_BYTES))
    sort = view.sort if view.sort in SORT_KEYS else "version"
    columns = {"quality": quality, "latency": latency, "x": x, "y": y}
    wide = {m for key, m in columns.items() if m and m != ARTIFACT_BYTES and key in ("x", "y", sort)}
    aliases = list_aliases(session, model_name=name)
    rows = sort_rows(_version_rows(session, model.id, aliases, columns, _latest(session, wide, model_id=model.id)),
                     sort, view.descending)
    pages = max(1, -(-len(rows) // view.per_page))
    page = min(max(1, view.page), pages)
    shown = rows[(page - 1) * view.per_page: page * view.per_page]
    narrow = {m for m in (quality, latency) if m and m not in wide}
    extra = _latest(session, narrow, version_ids=[r["id"] for r in shown]) if shown and narrow else {}
    for row in shown:
        row.update({key: extra.get(row["id"], {}).get(m, row[key]) for key, m in (("quality", quality),
                                                                                  ("latency", latency)) if m in narrow})
    minimize_x, maximize_y = lower_is_better(x), not lower_is_better(y)
    plotted = [r for r in rows if r["x"] is not None and r["y"] is not None]
    like = like_for_like(session, model.id, {r["id"] for r in plotted}, (x, y))  # timings: one host context
    plotted = [r for r in plotted if r["id"] in like.kept]
    points = [(r["version"], r["x"], r["y"]) for r in plotted]
    front = [v for v, _, _ in pareto_select([p for p, r in zip(points, plotted, strict=True) if r["status"] == "ready"],
                                            minimize_x=minimize_x, maximize_y=maximize_y)]
    return {"model": {"name": model.name, "description": model.description, "archived": model.archived},
            "quality": quality, "latency": latency, "axes": axes, "x": x, "y": y, "minimize_x": minimize_x,
            "maximize_y": maximize_y, "sort": sort, "descending": view.descending, "page": page, "pages": pages,
            "total": len(rows), "rows": shown, "points": points, "front": front, "aliases": aliases,
            "host": like.host, "plot_note": like.note}


def _aliases_by_version(aliases: dict[str, int]):
    grouped: dict[int, list[str]] = {}
    for alias, number in aliases.items():
        grouped.setdefault(number, []).append(alias)
    return grouped.items()

