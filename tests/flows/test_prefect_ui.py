"""The Prefect dashboard in a real browser (headless Debian Chromium, Playwright): `shrinkwrap serve` starts
a Prefect server with its UI on a free loopback port and serves the deployments; from the dashboard a
custom run of the tiny MNIST recipe, with one field edited in the form, runs to completion and registers
its versions under the edited setting; a bad value typed into the form fails before any stage runs; a
schedule from the schedules file shows its cron and is paused from the UI. Every request the page makes
goes to 127.0.0.1. Screenshots land in bench/out/ui/."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import yaml
from flows_testing import ROOT, tiny_mnist
from prefect_ui_driver import (
    CHROMIUM,
    choose,
    chromium,
    click_tab,
    dropdown_options,
    dropdown_values,
    form_field,
    form_properties,
    form_property,
    open_custom_run,
    open_flow_run,
    serve_with_dashboard,
    submit_custom_run,
    union_choices,
    wait_flow_run,
)

from compress.techniques import QUANTIZERS
from flows.recipe import RECIPE_MODELS, Recipe
from registry import repository as repo
from registry.errors import NotFound
from registry.session import session_scope

pytest.importorskip("playwright", reason="pip install playwright (the browser is Debian's chromium)")
pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: apt-get install chromium")]
SCHEDULE = "ui-nightly"


@pytest.fixture(scope="module")
def served(registry_env, tmp_path_factory):
    """`shrinkwrap serve --no-api` (its own Prefect server, dashboard on) with one cron schedule; this
    process's Prefect client points at that server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workdir = tmp_path_factory.mktemp("prefect-ui")
    schedules = workdir / "schedules.yaml"
    schedules.write_text(yaml.safe_dump({"schedules": [
        {"name": SCHEDULE, "flow": "reevaluate", "cron": "0 3 * * *", "timezone": "UTC",
         "parameters": {"model": "mnist-ui", "alias": "staging"}}]}))
    with serve_with_dashboard(workdir, schedules) as s, temporary_settings(updates={PREFECT_API_URL: s.api}):
        yield s


def deployment_id(name: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.read_deployment_by_name(name).id)


def test_custom_run_from_the_form_completes_and_registers(served):
    from prefect.client.orchestration import get_client

    assert served.dashboard == served.api.removesuffix("api")  # the URL `serve` printed
    model = f"mnist-ui-{uuid.uuid4().hex[:6]}"
    with chromium() as b:
        page = b.page
        started = time.monotonic()
        page.goto(served.dashboard)
        page.locator("a[href='/deployments']").first.wait_for()
        b.shot("01-dashboard")
        page.locator("a[href='/deployments']").first.click()
        page.get_by_text("compress-model").first.wait_for()
        b.shot("02-deployments")
        page.get_by_role("link", name="default", exact=True).first.click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run").click()
        form_field(page, "recipe", "Name").wait_for()
        assert form_field(page, "recipe", "Name").input_value() == "mnist-mlp"  # prefilled from recipes/mnist.yaml
        # the recipe as a form: one per task, picked by a button (the union keyed on task), this one's task
        # picked; sections, descriptions, enums as dropdowns, the variant list typed
        assert union_choices(page, "recipe") == (sorted(RECIPE_MODELS), ["classification"])
        assert form_field(page, "recipe", "Task").input_value() == "classification"
        assert dropdown_options(page, "recipe", "Prune", "Scope") == ["global", "layer", "neuron"]
        assert "fine-tune epochs per round" in form_property(page, "recipe", "Prune", "Epochs").inner_text()
        names = form_properties(page, "recipe", "Quantize", "Variants", "Name").locator("textarea")
        assert names.evaluate_all("es => es.map(e => e.value)") == ["sparse-fp32", "int8", "nf4"]
        assert dropdown_values(page, "recipe", "Quantize", "Variants", "Technique") == ["none", "int8", "nf4"]
        assert dropdown_options(page, "recipe", "Quantize", "Variants", "Technique") == sorted(QUANTIZERS)
        options = form_properties(page, "recipe", "Quantize", "Variants", "Options").locator("textarea")
        shipped = Recipe.from_yaml(ROOT / "recipes" / "mnist.yaml").quantize.variants
        assert [json.loads(v) if v else None for v in options.evaluate_all("es => es.map(e => e.value)")] == [
            v.model_dump(mode="json").get("options") for v in shipped]  # each technique's own options, as JSON
        form_property(page, "recipe", "Prune").scroll_into_view_if_needed()
        b.shot("03-form-default", full_page=False)
        choose(page, "recipe", "causal_lm")  # another task's button shows that task's form
        form_property(page, "recipe", "Llm").wait_for()
        assert form_properties(page, "recipe", "Dataset").count() == 0
        assert "task: causal_lm" in form_property(page, "recipe").locator(".p-label__description").first.inner_text()

        open_custom_run(b, served.dashboard, deployment_id("compress-model/default"), {"recipe": tiny_mnist(name=model)})
        assert form_field(page, "recipe", "Name").input_value() == model
        p = form_field(page, "recipe", "Prune", "P")
        assert p.input_value() == "0.5"
        p.fill("0.4")  # the one field edited in the form
        p.scroll_into_view_if_needed()
        b.shot("04-form-edited", full_page=False)
        flow_run_id = submit_custom_run(b)
        flow_run = wait_flow_run(flow_run_id)
        elapsed = time.monotonic() - started
        open_flow_run(b, served.dashboard, flow_run_id)
        b.shot("05-run-completed")
        open_flow_run(b, served.dashboard, flow_run_id, tab="Artifacts")
        page.get_by_text(f"{model}-variants").first.wait_for()
        page.get_by_text("registry", exact=True).first.wait_for()
        b.shot("06-run-artifacts")
        hosts = b.hosts()
    print(f"dashboard -> completed tiny MNIST run: {elapsed:.1f} s")
    assert flow_run.state_name == "Completed", flow_run.state.message
    assert hosts == {"127.0.0.1"}, f"requests left the machine: {hosts}"

    with session_scope() as s:
        run = repo.get_run_by_flow_run_id(s, flow_run_id=flow_run_id)
        versions, count = repo.list_versions(s, model_name=model)
        run_id, recipe, status, name, url = run.id, run.recipe, run.status, run.flow_run_name, run.flow_run_url
    assert status == "completed" and recipe["prune"]["p"] == 0.4  # the edited setting
    assert count == 3 and {v.run_id for v in versions} == {run_id}
    assert name == flow_run.name and url == f"{served.dashboard}runs/flow-run/{flow_run_id}"
    with get_client(sync_client=True) as client:
        tags = set(client.read_flow_run(flow_run_id).tags)
    assert {f"shrinkwrap-run:{run_id}", f"{model}:v1", f"{model}:v2", f"{model}:v3"} <= tags


def test_bad_value_in_the_form_fails_before_any_stage(served):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    model = f"mnist-ui-bad-{uuid.uuid4().hex[:6]}"
    with chromium() as b:
        open_custom_run(b, served.dashboard, deployment_id("compress-model/default"), {"recipe": tiny_mnist(name=model)})
        form_field(b.page, "recipe", "Prune", "P").fill("1")  # q is 1.0: SAP needs p < q
        flow_run_id = submit_custom_run(b)
        flow_run = wait_flow_run(flow_run_id)
        open_flow_run(b, served.dashboard, flow_run_id)
        b.shot("07-bad-value-failed")
        hosts = b.hosts()
    assert flow_run.state_name == "Failed"
    message = flow_run.state.message
    assert "recipe.classification.prune" in message and "p=1.0, q=1.0" in message, message  # task member, field
    with get_client(sync_client=True) as client:
        stages = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert stages == []
    with session_scope() as s, pytest.raises(NotFound):
        repo.get_run_by_flow_run_id(s, flow_run_id=flow_run_id)
    with session_scope() as s, pytest.raises(NotFound):
        repo.get_model(s, name=model)
    assert hosts == {"127.0.0.1"}, f"requests left the machine: {hosts}"


def test_schedule_shows_its_cron_and_pauses_from_the_ui(served):
    from prefect.client.orchestration import get_client

    dep_id = deployment_id(f"reevaluate-model/{SCHEDULE}")
    with chromium() as b:
        page = b.page
        page.goto(f"{served.dashboard}deployments/deployment/{dep_id}")
        card = page.locator(".deployment-schedule-card")
        card.get_by_text("At 03:00 AM every day").wait_for()
        click_tab(page, "Description")
        page.get_by_text("reevaluate every 0 3 * * * (UTC)").wait_for()
        b.shot("08-schedule")
        toggle = card.get_by_role("switch")
        assert toggle.get_attribute("aria-checked") == "true"
        toggle.click()
        page.locator(".deployment-schedule-card [role=switch][aria-checked=false]").wait_for()
        b.shot("09-schedule-paused")
        hosts = b.hosts()
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while (schedule := client.read_deployment(dep_id).schedules[0]).active and time.monotonic() < deadline:
            time.sleep(0.5)
    assert schedule.active is False and schedule.schedule.cron == "0 3 * * *"
    assert hosts == {"127.0.0.1"}, f"requests left the machine: {hosts}"


def test_no_ui_serves_the_api_without_the_dashboard(tmp_path, monkeypatch):
    """`shrinkwrap serve --no-ui` / start_prefect_server(ui=False): the API answers, the dashboard 404s."""
    import httpx
    from prefect_ui_driver import free_port

    from flows.deploy import start_prefect_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    proc = start_prefect_server(free_port(), ui=False)
    try:
        api = os.environ["PREFECT_API_URL"]
        assert httpx.get(f"{api}/health").status_code == 200
        assert httpx.get(api.removesuffix("api")).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)
