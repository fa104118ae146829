"""Links between a registry run and the Prefect flow run that executes it, both ways.

- registry -> Prefect: `link_flow_run(run_id)` records the flow run's id, name and dashboard URL on the
  registry run (`pipeline_runs.flow_run_name/flow_run_url`), so `GET /runs/{id}`, the CLI and the registry
  UI can send a reader to the flow run page;
- Prefect -> registry: it tags the flow run `shrinkwrap-run:<id>` (the tag `POST /runs` already sets on the
  runs it starts), and `publish_registry_link(run_id, registered)` adds a markdown artifact "registry"
  naming the run and the versions it created, plus one tag per version (`mnist-mlp:v3`).

Both are no-ops outside a flow run (a plain function call, `task.fn` in tests). The flow calls them:

    run_id = open_run(recipe)
    link_flow_run(run_id)                                  # right after the registry run is opened
    ...
    registered = stages.register_stage(run_id, recipe, exports) ...
    publish_registry_link(run_id, registered)              # after the versions are registered
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

RUN_TAG_PREFIX = "shrinkwrap-run"  # flows.flow and api/prefect_runs.py read and write the same tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowRunLink:
    id: str
    name: str | None
    url: str | None


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect dashboard (PREFECT_UI_URL, by default PREFECT_API_URL less `/api`)."""
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=str(flow_run_id))


def current_flow_run() -> FlowRunLink | None:
    """The flow run this code executes in, or None outside one."""
    from prefect.runtime import flow_run

    if not flow_run.id:
        return None
    return FlowRunLink(id=str(flow_run.id), name=flow_run.name, url=flow_run_url(flow_run.id))


def link_flow_run(run_id: int) -> FlowRunLink | None:
    """Record the current flow run (id, name, URL) on registry run `run_id` and tag the flow run with the
    registry run id. Returns the link, or None outside a flow run."""
    from registry import repository as repo
    from registry.session import session_scope

    link = current_flow_run()
    if link is None:
        return None
    with session_scope() as s:
        repo.link_flow_run(s, run_id=run_id, flow_run_id=link.id, name=link.name, url=link.url)
    add_flow_run_tags(link.id, [f"{RUN_TAG_PREFIX}:{run_id}"])
    return link


def add_flow_run_tags(flow_run_id: str, tags: list[str]) -> None:
    """Add `tags` to a flow run (the flow run page and the runs list show and filter on them)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        current = list(client.read_flow_run(flow_run_id).tags or [])
        client.update_flow_run(flow_run_id, tags=current + [t for t in tags if t not in current])


def registry_markdown(run_id: int, registered: dict[str, Any] | None) -> str:
    """The "registry" artifact: which registry run this flow run is and which versions it created."""
    lines = [f"# Registry run {run_id}", "", f"`shrinkwrap runs` / `GET /runs/{run_id}`", ""]
    versions = (registered or {}).get("versions") or {}
    model = (registered or {}).get("model")
    if not versions:
        return "\n".join([*lines, "No versions were registered by this run."])
    promoted = (registered or {}).get("promoted") or {}
    lines += ["| variant | version | alias |", "|---|---:|---|"]
    for variant, version in versions.items():
        alias = promoted.get("alias", "") if promoted.get("variant") == variant else ""
        lines.append(f"| {variant} | {f'`{model}:{version}`' if model else version} | {alias} |")
    return "\n".join(lines)


def publish_registry_link(run_id: int, registered: dict[str, Any] | None) -> None:
    """A markdown artifact naming registry run `run_id` and its versions; one `model:vN` tag per version."""
    link = current_flow_run()
    if link is None:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key="registry", markdown=registry_markdown(run_id, registered),
                             description=f"registry run {run_id} and the versions it created")
    model = (registered or {}).get("model")
    versions = ((registered or {}).get("versions") or {}).values()
    if model and versions:
        add_flow_run_tags(link.id, [f"{model}:v{v}" for v in versions])
