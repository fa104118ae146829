"""The version page (metrics, model card, files, lineage) and the runs pages, as plain dicts.

The model card is the export's README.md, rendered with markdown-it-py in CommonMark mode with raw HTML
off (any `<script>` in it stays text) and images off (a card must not make the browser fetch anything);
markdown-it's own link check already refuses javascript:, vbscript:, file: and data: URLs.
The Prefect link needs PREFECT_UI_URL, or PREFECT_API_URL minus its trailing /api (Prefect's layout).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.lineage import version_graph
from registry.models import StageRun
from registry.repository import (
    get_run,
    latest_values,
    list_aliases,
    list_runs,
    list_stages,
    list_version_metric_dicts,
    version_lineage,
)
from registry.store import ArtifactStore

CARD_NAME = "README.md"
MAX_CARD_BYTES = 256 * 1024  # a card is a few KiB; refuse to render a runaway one
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")


def render_card(text: str) -> str:
    """Markdown -> HTML that is safe to embed: raw HTML escaped, no images, only safe link schemes."""
    return _MARKDOWN.render(text)


def duration_s(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def prefect_ui_url() -> str | None:
    """Base URL of the Prefect UI (PREFECT_UI_URL, else PREFECT_API_URL without /api), or None."""
    url = os.environ.get("PREFECT_UI_URL", "").strip()
    if not url:
        api = os.environ.get("PREFECT_API_URL", "").strip().rstrip("/")
        url = api.removesuffix("/api") if api else ""
    return url.rstrip("/") or None


def flow_run_url(flow_run_id: str | None) -> str | None:
    base = prefect_ui_url()
    return f"{base}/runs/flow-run/{flow_run_id}" if base and flow_run_id else None


def _files(store: ArtifactStore, artifact) -> tuple[list[dict], str | None]:
    """(files with download paths, the rendered model card or None) of the version's artifact."""
    if not artifact.is_dir:
        return [{"path": f"{artifact.kind}-{artifact.id}.{artifact.format}", "bytes": artifact.bytes,
                 "href": f"/ui/artifacts/{artifact.id}/download"}], None
    files = store.read_manifest(artifact.sha256)
    card = None
    for entry in files:
        if entry["path"] == CARD_NAME and entry["bytes"] <= MAX_CARD_BYTES and store.exists(entry["sha256"]):
            card = render_card(store.read_bytes(entry["sha256"]).decode("utf-8", "replace"))
    return [{"path": e["path"], "bytes": e["bytes"], "href": f"/ui/artifacts/{artifact.id}/files/{e['path']}"}
            for e in files], card


def version_page(session: Session, store: ArtifactStore, *, name: str, version: int) -> dict[str, Any]:
    lineage = version_lineage(session, model_name=name, version=version)
    row, run = lineage["version"], lineage["run"]
    artifact = lineage["nodes"][0]
    metrics = [{"name": m["name"], "value": m["value"], "on": "version", "stage": m["stage"], "step": m["step"]}
               for m in list_version_metric_dicts(session, model_name=name, version=version)]
    on_version = {m["name"] for m in metrics}
    metrics += [{"name": k, "value": v, "on": f"artifact {artifact.id}", "stage": None, "step": None}
                for k, v in latest_values(session, artifact_id=artifact.id).items() if k not in on_version]
    files, card = _files(store, artifact) if store.exists(artifact.sha256) else ([], None)
    return {"name": name, "version": version, "status": row.status, "description": row.description,
            "created_at": row.created_at, "aliases": row.aliases, "all_aliases": list_aliases(session, model_name=name),
            "technique": (artifact.meta or {}).get("technique"), "artifact": {"id": artifact.id, "kind": artifact.kind,
            "format": artifact.format, "bytes": artifact.bytes, "sha256": artifact.sha256},
            "run": {"id": run.id, "status": run.status} if run else None, "metrics": metrics, "files": files,
            "card": card, "graph": version_graph(row, lineage)}


def runs_page(session: Session, *, limit: int, offset: int) -> tuple[list[dict], int]:
    runs, total = list_runs(session, limit=limit, offset=offset)
    counts: dict[int, dict[str, int]] = {}
    for run_id, status, n in session.execute(select(StageRun.run_id, StageRun.status, func.count())
                                             .where(StageRun.run_id.in_([r.id for r in runs]))
                                             .group_by(StageRun.run_id, StageRun.status)):
        counts.setdefault(run_id, {})[status] = n
    return [{"id": r.id, "name": (r.recipe or {}).get("name"), "status": r.status, "created_at": r.created_at,
             "duration_s": duration_s(r.started_at, r.finished_at), "error": r.error,
             "stages": counts.get(r.id, {}), "prefect_url": flow_run_url(r.flow_run_id)} for r in runs], total


def run_page(session: Session, *, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id=run_id)
    stages = [{"id": s.id, "name": s.name, "status": s.status, "cached": s.status == "cached",
               "started_at": s.started_at, "duration_s": duration_s(s.started_at, s.finished_at), "error": s.error}
              for s in list_stages(session, run_id=run_id)]
    return {"id": run.id, "name": (run.recipe or {}).get("name"), "status": run.status, "created_at": run.created_at,
            "duration_s": duration_s(run.started_at, run.finished_at), "error": run.error,
            "flow_run_id": run.flow_run_id, "prefect_url": flow_run_url(run.flow_run_id),
            "git_commit": run.git_commit, "stages": stages}
