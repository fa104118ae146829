"""The `reevaluate-model` flow: re-run the evaluation of an aliased version (e.g. `production`) on its
dataset and teacher, log the fresh metrics on the version (stage `reevaluate`), and publish a markdown
comparison with the metrics recorded at registration. Scheduled nightly from schedules.yaml, so a drift
(a changed library, machine or export file) shows up as a difference; a corrupted export fails the run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from compress.evaluate.timing import host_context, host_metrics
from flows.recipe import Recipe
from registry import repository as repo
from registry.session import session_scope

COMPARED = ("accuracy", "agreement", "kl_to_teacher", "file_bytes", "latency_p50_ms")


def _version_inputs(model: str, alias: str) -> dict[str, Any]:
    with session_scope() as s:
        version = repo.get_version_by_alias(s, model_name=model, alias=alias)
        lineage = repo.version_lineage(s, model_name=model, version=version.version)
        ids = {n.kind: n.id for n in reversed(lineage["nodes"]) if n.kind in ("dataset", "teacher")}
        if version.run is None:
            raise LookupError(f"{model}@{alias} (version {version.version}) has no pipeline run, so its recipe is "
                              "unknown; re-evaluate a version registered by compress-model")
        measured_on = (repo.get_artifact(s, artifact_id=version.artifact_id).meta or {}).get("measured_on") or {}
        return {"version_id": version.id, "version": version.version, "artifact_id": version.artifact_id,
                "recipe": version.run.recipe, "dataset_id": ids.get("dataset"), "teacher_id": ids.get("teacher"),
                "registered": repo.latest_values(s, version_id=version.id),
                "registered_host": measured_on.get("fingerprint")}


@task(name="reevaluate", retries=1, timeout_seconds=1800, cache_policy=NO_CACHE, persist_result=False)
def reevaluate_version(model: str, alias: str) -> dict[str, Any]:
    from compress.tasks import get_task
    from flows.stages import local

    info = _version_inputs(model, alias)
    if info["dataset_id"] is None:
        raise LookupError(f"{model}@{alias}: no dataset in the version's lineage; cannot re-evaluate")
    recipe = Recipe.model_validate(info["recipe"])
    host = host_context()
    fresh = get_task(recipe.task).evaluate(recipe, local(info["artifact_id"]), local(info["dataset_id"]),
                                           local(info["teacher_id"]))
    with session_scope() as s:
        repo.log_metrics(s, metrics=fresh, version_id=info["version_id"], stage="reevaluate")
    return {"model": model, "alias": alias, "version": info["version"], "fresh": {**host_metrics(host), **fresh},
            "registered": info["registered"], "registered_host": info["registered_host"],
            "host": host["fingerprint"]}


def comparison_markdown(result: dict[str, Any]) -> str:
    """Registered against fresh metrics. Latencies compare only like for like: when the host context
    (cpu model, cpu count, timing threads, device, torch) differs or is unknown, their change is not
    drift and the table says so instead of printing it."""
    like_for_like = result.get("registered_host") is not None and result.get("registered_host") == result.get("host")
    lines = [f"# {result['model']}@{result['alias']} (version {result['version']}): re-evaluation", "",
             "| metric | registered | now | change |", "|---|---:|---:|---:|"]
    for name in COMPARED:
        old, new = result["registered"].get(name), result["fresh"].get(name)
        if new is None:
            continue
        change = f"{new - old:+.6g}" if old is not None else "-"
        if repo.timing_metric(name) and not like_for_like:
            change = "not comparable: measured on another host context"
        lines.append(f"| {name} | {old if old is not None else '-'} | {new:.6g} | {change} |")
    return "\n".join(lines)


@flow(name="reevaluate-model", persist_result=False, log_prints=True)
def reevaluate_model(model: str, alias: str = "production") -> dict[str, Any]:
    """Re-evaluate `model@alias` and record the fresh metrics on that version."""
    from prefect.artifacts import create_markdown_artifact

    result = reevaluate_version(model, alias)
    key = "".join(c if c.isalnum() else "-" for c in f"{model}-{alias}".lower())[:50]
    create_markdown_artifact(key=f"{key}-reevaluation", markdown=comparison_markdown(result))
    return result
