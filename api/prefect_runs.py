"""Run triggering through Prefect: create a flow run of the compression deployment, cancel one, check
that the Prefect API answers. Uses Prefect's synchronous client (routes run in the threadpool).

Every Prefect failure becomes a 503 that says what to start: no PREFECT_API_URL, an unreachable server,
or a missing deployment all mean `shrinkwrap serve` is not running (it starts the server and serves the
deployment). The API never spins up Prefect's ephemeral server itself: that would hide the fact that
nothing is there to execute the run.
"""

from __future__ import annotations

from typing import Any

import httpx

from api.errors import ApiError
from registry.config import run_tag  # lets the flow find the registry row the API created

START_HINT = ("start the Prefect server and the compression deployment with `shrinkwrap serve`, and point "
              "the API at it with PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
FINAL_PREFECT_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "prefect_unavailable", message)


def _client(timeout_s: float):
    from prefect.client.orchestration import get_client

    url = prefect_api_url()
    if url is None:
        raise _unavailable(f"PREFECT_API_URL is not set, so no Prefect server is known; {START_HINT}")
    return get_client(httpx_settings={"timeout": timeout_s}, sync_client=True), url


def _transport_error(err: Exception, url: str) -> ApiError:
    return _unavailable(f"Prefect API at {url} is unreachable ({type(err).__name__}); {START_HINT}")


def prefect_health(timeout_s: float) -> tuple[bool, str]:
    """(reachable, detail) for the readiness probe; never raises."""
    try:
        client, url = _client(timeout_s)
    except ApiError as err:
        return False, err.message
    try:
        with client:
            failure = client.api_healthcheck()
    except Exception as err:  # noqa: BLE001 - a probe reports, it does not fail
        return False, _transport_error(err, url).message
    if failure is not None:
        return False, _transport_error(failure, url).message
    return True, f"Prefect API at {url} is healthy"


def trigger_flow_run(*, deployment: str, parameters: dict[str, Any], run_id: int, timeout_s: float) -> str:
    """Create a flow run of `deployment` and return its id; 503 (ApiError) when Prefect can't take it."""
    from prefect.exceptions import ObjectNotFound

    client, url = _client(timeout_s)
    try:
        with client:
            try:
                dep = client.read_deployment_by_name(deployment)
            except ObjectNotFound:
                raise _unavailable(f"no Prefect deployment named {deployment!r} at {url}; {START_HINT}") from None
            flow_run = client.create_flow_run_from_deployment(
                dep.id, parameters=parameters, tags=[run_tag(run_id)])
    except (httpx.TransportError, OSError) as err:
        raise _transport_error(err, url) from err
    except httpx.HTTPStatusError as err:
        if err.response.status_code == 422:  # the deployment's flow has other parameters than ours
            raise ApiError(409, "deployment_mismatch",
                           f"Prefect deployment {deployment!r} refused the recipe parameters "
                           f"({err.response.text[:500]}); redeploy with `shrinkwrap serve`") from err
        raise _unavailable(f"Prefect API at {url} answered {err.response.status_code}; {START_HINT}") from err
    return str(flow_run.id)


def cancel_flow_run(*, flow_run_id: str, timeout_s: float) -> str:
    """Ask Prefect to cancel a flow run; returns the state type it ends up in (e.g. CANCELLING)."""
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Cancelled, Cancelling

    client, url = _client(timeout_s)
    try:
        with client:
            try:
                flow_run = client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                return "MISSING"  # the Prefect database was reset; the registry row can still be cancelled
            state = flow_run.state.type.value if flow_run.state else "PENDING"
            if state in FINAL_PREFECT_STATES or state == "CANCELLING":
                return state
            # A run that never started has no process to stop: cancel it outright.
            new = Cancelling() if state in ("RUNNING", "PAUSED") else Cancelled()
            result = client.set_flow_run_state(flow_run_id, new)
    except (httpx.TransportError, OSError) as err:
        raise _transport_error(err, url) from err
    except httpx.HTTPStatusError as err:
        raise _unavailable(f"Prefect API at {url} answered {err.response.status_code}; {START_HINT}") from err
    return result.state.type.value if result.state else new.type.value
