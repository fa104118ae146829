"""Prefect's view of flow runs, for run reconciliation (registry/reconciler.py): used by `shrinkwrap runs`
and by the admin API at start."""

from __future__ import annotations

from collections.abc import Callable


def flow_run_states(flow_run_ids: list[str], timeout_s: float = 5.0) -> dict[str, str] | None:
    """{flow_run_id: Prefect state type} for run reconciliation, "GONE" for an id Prefect does not know;
    None (never raises) when no Prefect server is configured or it does not answer."""
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = {}
    for raw in flow_run_ids:
        try:
            ids[str(UUID(raw))] = raw
        except ValueError:
            continue
    if not ids:
        return {}
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    try:
        with get_client(httpx_settings={"timeout": timeout_s}, sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                any_=[UUID(i) for i in ids])), limit=len(ids))
    except Exception:  # noqa: BLE001 - no answer means no information, never a crashed run
        return None
    found = {str(r.id): (r.state.type.value if r.state else "PENDING") for r in runs}
    return {raw: found.get(norm, "GONE") for norm, raw in ids.items()}


def states_lookup(url: str) -> Callable[[list[str]], dict[str, str] | None]:
    """`flow_run_states` against the Prefect API at `url`, callable from any thread (the setting is
    applied per call, since a new thread does not inherit Prefect's settings context)."""
    def lookup(flow_run_ids: list[str]) -> dict[str, str] | None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url}):
            return flow_run_states(flow_run_ids)
    return lookup
