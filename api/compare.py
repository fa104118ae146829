"""Compare the versions of a model on two metrics: every version's (x, y) plus the registry's Pareto front.

The front is `registry.repository.pareto_select` (the one definition of dominance) over the values this
module gathers for *all* versions, so a client can plot the dominated ones too.
Values follow the registry's rule: the latest metric logged on the version or on its artifact, and the
pseudo-metric `artifact_bytes` is the artifact's stored size.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.models import Artifact, Metric, Model, ModelVersion
from registry.repository import ARTIFACT_BYTES, get_model, like_for_like, pareto_select


def version_values(session: Session, model: Model, names: set[str]) -> dict[int, dict[str, float]]:
    """{version number: {metric: latest value}} over the model's ready versions.

    TODO(registry): the registry computes the same table privately (versions._metric_table); a public
    function there would let this module go away."""
    rows = session.execute(select(ModelVersion.id, ModelVersion.version, ModelVersion.artifact_id, Artifact.bytes)
                           .join(Artifact, Artifact.id == ModelVersion.artifact_id)
                           .where(ModelVersion.model_id == model.id, ModelVersion.status == "ready")).all()
    table = {number: {} for _, number, _, _ in rows}
    by_version = {vid: number for vid, number, _, _ in rows}
    by_artifact: dict[int, list[int]] = {}
    for _, number, aid, size in rows:
        by_artifact.setdefault(aid, []).append(number)
        if ARTIFACT_BYTES in names:
            table[number][ARTIFACT_BYTES] = float(size)
    if not rows:
        return table
    metrics = session.execute(select(Metric.name, Metric.value, Metric.version_id, Metric.artifact_id)
                              .where(Metric.name.in_(names), or_(Metric.version_id.in_(list(by_version)),
                                                                 Metric.artifact_id.in_(list(by_artifact))))
                              .order_by(Metric.id))
    for name, value, version_id, artifact_id in metrics:  # ordered by id: the latest value wins
        targets = [by_version[version_id]] if version_id in by_version else by_artifact.get(artifact_id, [])
        for number in targets:
            table[number][name] = value
    return table


def compare_versions(session: Session, *, model_name: str, x_metric: str, y_metric: str, minimize_x: bool,
                     maximize_y: bool, host: str | None = None) -> dict:
    """Every version with both metrics, and the front. A timing metric on either axis restricts both to
    the versions measured on one host context (`host`, default the newest version's): latencies from
    different machines or thread counts are not comparable, and the answer names who was left out."""
    model = get_model(session, name=model_name)
    values = version_values(session, model, {x_metric, y_metric})
    ids = dict(session.execute(select(ModelVersion.version, ModelVersion.id)
                               .where(ModelVersion.model_id == model.id)).all())
    both = {ids[n] for n, v in values.items() if x_metric in v and y_metric in v}
    like = like_for_like(session, model.id, both, (x_metric, y_metric), host)
    kept = [(number, v[x_metric], v[y_metric]) for number, v in sorted(values.items()) if ids[number] in like.kept]
    front = [number for number, _, _ in pareto_select(kept, minimize_x=minimize_x, maximize_y=maximize_y)]
    on_front = set(front)
    data = [{"version": number, "x": x, "y": y, "pareto": number in on_front} for number, x, y in kept]
    number_of = {vid: n for n, vid in ids.items()}
    return {"model_name": model_name, "x_metric": x_metric, "y_metric": y_metric, "minimize_x": minimize_x,
            "maximize_y": maximize_y, "data": data, "front": front, "host": like.host,
            "excluded": sorted(number_of[v] for v in like.excluded), "note": like.note}
