"""Deployments and schedules: schedules.yaml validates, `shrinkwrap serve` builds the compression
deployment + one per schedule, and a scheduled deployment produces a real run (scheduled by the Prefect
server from the deployment's schedule, executed by a Runner) that records fresh metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from flows.deploy import DEFAULT_SCHEDULES, DEPLOYMENT_NAME, ScheduleEntry, build_deployments, load_schedules
from flows.form import FormUnion
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


def test_pausing_a_schedule_stops_it(prefect):
    """What the dashboard's schedule toggle sends (PATCH /deployments/{id}/schedules/{sid} active=false):
    the runs already scheduled from it are removed and the scheduler makes none until it is resumed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    entry = ScheduleEntry(name="test-pause", flow="reevaluate", cron="*/5 * * * *", parameters={"model": "m"})
    deployment_id = build_deployments([entry])[1].apply()
    only_scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))

    with get_client(sync_client=True) as client:
        def schedule_runs() -> int:
            """What the server's scheduler loop does for this deployment; returns the runs now scheduled."""
            client._client.post(f"/deployments/{deployment_id}/schedule", json={"max_runs": 3}).raise_for_status()
            return len(client.read_flow_runs(flow_run_filter=only_scheduled, deployment_filter=of_deployment))

        schedule = client.read_deployment(deployment_id).schedules[0]
        assert schedule.schedule.cron == "*/5 * * * *" and schedule.active
        assert schedule_runs() == 3
        client.update_deployment_schedule(deployment_id, schedule.id, active=False)
        assert client.read_deployment(deployment_id).schedules[0].active is False
        assert schedule_runs() == 0
        client.update_deployment_schedule(deployment_id, schedule.id, active=True)
        assert schedule_runs() == 3



class _ClsRecipe(BaseModel):  # module level: `from __future__ import annotations` resolves names here
    model_config = ConfigDict(extra="forbid", title="image_classification")
    task: Literal["image_classification"] = "image_classification"
    p: float = Field(0.5, description="PQ Index p")


class _LMRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", title="causal_lm")
    task: Literal["causal_lm"] = "causal_lm"
    steps: int = Field(50, description="distillation steps")


UnionRecipe = Annotated[_ClsRecipe | _LMRecipe, Field(discriminator="task"), FormUnion()]


def test_form_union_renders_as_any_of_and_still_validates_by_tag():
    """The recipe union after the architecture change: Prefect's parameter schema must use anyOf (the
    dashboard renders it as a form per task; oneOf + discriminator falls back to a JSON editor)."""
    from prefect import flow
    from prefect.utilities.callables import parameter_schema

    @flow
    def toy(recipe: UnionRecipe) -> None: ...

    schema = parameter_schema(toy).model_dump()
    recipe = schema["properties"]["recipe"]
    assert "oneOf" not in recipe and "discriminator" not in recipe
    assert [m["$ref"].rsplit("/", 1)[1] for m in recipe["anyOf"]] == ["_ClsRecipe", "_LMRecipe"]
    assert schema["definitions"]["_LMRecipe"]["properties"]["steps"]["description"] == "distillation steps"
    assert isinstance(TypeAdapter(UnionRecipe).validate_python({"task": "causal_lm"}), _LMRecipe)
    with pytest.raises(ValidationError, match=r"causal_lm\.p"):  # the tag picks the member; the field is named
        TypeAdapter(UnionRecipe).validate_python({"task": "causal_lm", "p": 0.4})


class _OptsA(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = 6.0


class _OptsB(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bits: int = 4


class _VarA(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="the variant's name")
    technique: Literal["a"] = Field(..., description="technique a")
    options: _OptsA = Field(default_factory=_OptsA)


class _VarB(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="the variant's name")
    technique: Literal["b"] = Field(..., description="technique b")
    options: _OptsB = Field(default_factory=_OptsB)


class _VarNone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="the variant's name")
    technique: Literal["none"] = Field(..., description="no technique")


Variant = Annotated[_VarA | _VarB | _VarNone, Field(discriminator="technique"),
                    FormUnion(tag="technique", members=[_VarA, _VarB, _VarNone])]


def test_form_union_with_a_tag_is_one_object_per_list_item_and_still_validates_by_tag():
    """A union as a list item (the quantization variants): Prefect's form renders neither oneOf nor anyOf
    items (each becomes a JSON editor), so the item is one object: the tag a dropdown, shared fields as
    they are, fields that differ per member a JSON value described per tag."""
    from prefect import flow
    from prefect.utilities.callables import parameter_schema

    @flow
    def toy(variants: list[Variant]) -> None: ...

    item = parameter_schema(toy).model_dump()["properties"]["variants"]["items"]
    assert "oneOf" not in item and "anyOf" not in item and "$ref" not in str(item)
    assert item["type"] == "object" and item["required"] == ["name", "technique"]
    assert list(item["properties"]) == ["name", "technique", "options"]
    assert item["properties"]["technique"]["enum"] == ["a", "b", "none"]
    assert item["properties"]["name"] == {"description": "the variant's name", "title": "Name", "type": "string"}
    options = item["properties"]["options"]
    assert "type" not in options and options["description"] == (
        "JSON, by technique: a: {threshold: 6.0}; b: {bits: 4}; none: none")
    adapter = TypeAdapter(list[Variant])
    assert isinstance(adapter.validate_python([{"name": "x", "technique": "b", "options": {"bits": 3}}])[0], _VarB)
    with pytest.raises(ValidationError, match=r"b\.options\.threshold"):  # a's option on b is refused
        adapter.validate_python([{"name": "x", "technique": "b", "options": {"threshold": 5.0}}])
    with pytest.raises(ValueError, match="tag and members together"):
        FormUnion(tag="technique")
