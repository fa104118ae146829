"""Deployments and schedules: schedules.yaml validates, `shrinkwrap serve` builds the compression
deployment + one per schedule, and a scheduled deployment produces a real run (scheduled by the Prefect
server from the deployment's schedule, executed by a Runner) that records fresh metrics."""

from __future__ import annotations

import asyncio

import pytest

from flows.deploy import DEFAULT_SCHEDULES, DEPLOYMENT_NAME, ScheduleEntry, build_deployments, load_schedules
from flows.recipe import RecipeError
from registry import repository as repo
from registry.session import session_scope


def test_shipped_schedules_and_deployments():
    entries = load_schedules(DEFAULT_SCHEDULES)
    assert {e.flow for e in entries} == {"reevaluate", "compress"}
    deployments = build_deployments(entries)
    names = [f"{d.flow_name}/{d.name}" for d in deployments]
    assert names[0] == DEPLOYMENT_NAME
    assert deployments[0].parameters["recipe"]["name"] == "mnist-mlp"  # the form is prefilled
    assert all(d.schedules for d in deployments[1:]) and not deployments[0].schedules


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "flow": "reevaluate", "cron": "61 * * * *", "parameters": {"model": "m"}}, "cron"),
    ({"name": "x", "flow": "compress", "cron": "0 3 * * *"}, "needs recipe"),
    ({"name": "x", "flow": "reevaluate", "parameters": {"model": "m"}}, "exactly one of cron or interval"),
    ({"name": "x", "flow": "reevaluate", "cron": "0 3 * * *", "parameters": {"model": "m"}, "crn": 1}, "crn"),
])
def test_bad_schedules_refused(tmp_path, entry, message):
    import yaml

    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": [entry]}))
    with pytest.raises(RecipeError, match=message):
        load_schedules(path)


@pytest.mark.postgres
def test_scheduled_deployment_produces_a_run(first_run, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.runner import Runner

    entry = ScheduleEntry(name="test-reevaluate", flow="reevaluate", interval=2,
                          parameters={"model": "mnist-test", "alias": "staging"})
    deployment = build_deployments([entry])[1]

    async def schedule_and_execute():
        from prefect.client.orchestration import get_client as get_async_client

        runner = Runner(query_seconds=1)
        deployment_id = await runner.aadd_deployment(deployment)  # applies it (a re-apply resets schedules)
        async with get_async_client() as client:
            # what the server's scheduler service does on its loop: turn the schedule into flow runs
            response = await client._client.post(f"/deployments/{deployment_id}/schedule", json={"max_runs": 1})
            response.raise_for_status()
            scheduled = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
        await runner.start(run_once=True)  # executes the runs that are due, then pauses the deployment
        return scheduled

    scheduled = asyncio.run(schedule_and_execute())
    assert [r.state_name for r in scheduled] == ["Scheduled"]
    with get_client(sync_client=True) as client:
        done = client.read_flow_run(scheduled[0].id)
    assert done.state_name == "Completed", done.state
    with session_scope() as s:
        version = repo.get_version_by_alias(s, model_name="mnist-test", alias="staging")
        fresh = [m for m in repo.list_metrics(s, version_id=version.id) if m.stage == "reevaluate"]
    assert {m.name for m in fresh} >= {"accuracy", "file_bytes"}
