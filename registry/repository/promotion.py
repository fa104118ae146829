"""The promotion rule of a pipeline run: one version per exported variant, each checked against the
gates, and the alias moved to the best passing variant (`select_by`, `prefer`). One transaction: the
caller's session scope commits all of it or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy.orm import Session

from registry.repository.gates import Gate, evaluate_gates
from registry.repository.metrics import log_metrics
from registry.repository.models import get_or_create_model
from registry.repository.versions import create_version, set_alias


def best_variant(passing: list[str], metrics: Mapping[str, Mapping[str, float]], *, select_by: str,
                 prefer: Literal["max", "min"]) -> str | None:
    """The passing variant with the highest (max) or lowest (min) `select_by`; a variant without the
    metric ranks last."""
    if not passing:
        return None
    sign = 1.0 if prefer == "max" else -1.0
    return max(passing, key=lambda n: sign * metrics.get(n, {}).get(select_by, -sign * float("inf")))


def register_variants(session: Session, *, model_name: str, description: str | None, run_id: int | None,
                      exports: Mapping[str, int], metrics: Mapping[str, Mapping[str, float]],
                      gates: list[Gate], alias: str | None, select_by: str, prefer: Literal["max", "min"],
                      build_hash: str) -> dict[str, Any]:
    """Register each export artifact as a version of `model_name`, log its metrics, evaluate the gates
    and set `alias` on the best passing variant; returns versions, gate failures and the promotion."""
    get_or_create_model(session, name=model_name, description=description)
    rows, versions = {}, {}
    for name, aid in exports.items():
        row = create_version(session, model_name=model_name, artifact_id=aid, run_id=run_id,
                             description=f"variant {name} of recipe {model_name} ({build_hash[:12]})")
        if metrics.get(name):
            log_metrics(session, metrics=dict(metrics[name]), version_id=row.id, run_id=run_id, stage="register")
        rows[name], versions[name] = row, row.version
    failures = {name: evaluate_gates(session, version=row, gates=gates) for name, row in rows.items()}
    promoted = best_variant([n for n in rows if not failures[n]], metrics, select_by=select_by, prefer=prefer)
    if alias and promoted:
        set_alias(session, model_name=model_name, version=versions[promoted], alias=alias, gates=gates)
    return {"model": model_name, "versions": versions, "gate_failures": failures,
            "promoted": ({"alias": alias, "variant": promoted, "version": versions[promoted]}
                         if alias and promoted else None)}
