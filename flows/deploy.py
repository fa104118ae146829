"""Deployments: `shrinkwrap serve` serves the compression deployment (manual runs with the recipe form,
and `POST /runs` of the API) plus the cron schedules of `schedules.yaml`, and starts the API.

Two ways to execute runs:
- in this process (default): `prefect.serve(...)` polls for scheduled and manual runs and executes them;
- on workers (`--pool NAME`): deployments are registered on a Prefect *process* work pool and any machine
  with this checkout executes them with `prefect worker start --pool NAME` (docker-compose.yml does this).

Without PREFECT_API_URL, `serve` starts a Prefect server (`prefect server start`, state under
PREFECT_HOME) and points itself and the API at it, because the API must reach the same server the runner
polls. The server serves the Prefect dashboard (the recipe form of the compression deployment, runs, the
schedules) at the printed URL unless `--no-ui`; it works offline: analytics, telemetry and promotional
content are off (OFFLINE_ENV), so the browser talks to the loopback server only. Parameter sweeps can run their tasks on Dask: set SHRINKWRAP_TASK_RUNNER=dask
(needs the optional `prefect-dask` package).

schedules.yaml:

    schedules:
      - name: nightly-reevaluate-production     # deployment name under its flow
        flow: reevaluate                          # reevaluate | compress
        cron: "0 3 * * *"
        timezone: UTC
        parameters: {model: mnist-mlp, alias: production}
      - name: weekly-mnist
        flow: compress
        cron: "0 4 * * 0"
        recipe: recipes/mnist.yaml                # compress schedules take a recipe file
        active: false
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.cache import ROOT
from flows.local_server import dashboard_url, start_prefect_server, wait_healthy
from flows.prefect_states import states_lookup
from flows.recipe import Recipe, RecipeError, format_errors
from registry.config import DEPLOYMENT_NAME  # one home, shared with api/
from registry.reconciler import reconcile, start_reconciler

DEFAULT_SCHEDULES = ROOT / "schedules.yaml"
DEFAULT_RECIPE = ROOT / "recipes" / "mnist.yaml"


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]*$")
    flow: Literal["reevaluate", "compress"]
    cron: str | None = Field(None, description="five-field cron, e.g. '0 3 * * *'")
    interval: float | None = Field(None, gt=0, description="seconds between runs (instead of cron)")
    timezone: str = "UTC"
    active: bool = True
    recipe: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _flow_inputs(self):
        if self.flow == "compress" and not self.recipe:
            raise ValueError(f"schedule {self.name!r}: flow 'compress' needs recipe: <file.yaml>")
        if self.flow == "reevaluate" and "model" not in self.parameters:
            raise ValueError(f"schedule {self.name!r}: flow 'reevaluate' needs parameters: {{model: NAME}}")
        from prefect.client.schemas.schedules import CronSchedule

        if (self.cron is None) == (self.interval is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of cron or interval")
        if self.cron is None:
            return self
        try:
            CronSchedule(cron=self.cron, timezone=self.timezone)
        except ValueError as err:
            raise ValueError(f"schedule {self.name!r}: cron {self.cron!r} / timezone {self.timezone!r} is invalid "
                             f"({err.__class__.__name__}); use five fields, e.g. '0 3 * * *' for 03:00 daily") from None
        return self


class SchedulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedules: list[ScheduleEntry] = Field(default_factory=list)


def load_schedules(path: str | Path | None = None) -> list[ScheduleEntry]:
    path = Path(path) if path else DEFAULT_SCHEDULES
    if not path.is_file():
        return []
    try:
        return SchedulesFile.model_validate(yaml.safe_load(path.read_text()) or {}).schedules
    except ValidationError as err:
        raise RecipeError(f"{path} is invalid:\n{format_errors(err)}") from err


def _recipe_params(recipe_path: str | Path, base: Path) -> dict[str, Any]:
    path = Path(recipe_path)
    path = path if path.is_absolute() else base / path
    return {"recipe": Recipe.from_yaml(path).model_dump(mode="json")}


def build_deployments(schedules: list[ScheduleEntry], *, base: Path = ROOT, work_pool: str | None = None) -> list:
    """The compression deployment (DEPLOYMENT_NAME, no schedule) + one deployment per schedule."""
    from prefect.schedules import Cron, Interval

    from flows.flow import with_task_runner
    from flows.reevaluate import reevaluate_model

    compress_model = with_task_runner()
    flows = {"compress": compress_model, "reevaluate": reevaluate_model}
    target = (lambda f: f.from_source(str(ROOT), _entrypoint(f))) if work_pool else (lambda f: f)  # noqa: E731
    kw = {"work_pool_name": work_pool} if work_pool else {}
    default = {"recipe": Recipe.from_yaml(DEFAULT_RECIPE).model_dump(mode="json")} if DEFAULT_RECIPE.exists() else None
    deployments = [_deployment(target(compress_model), name=DEPLOYMENT_NAME.split("/")[1], parameters=default,
                               description="Compress a model as the recipe says (manual runs, POST /runs)",
                               tags=["shrinkwrap"], **kw)]
    for entry in schedules:
        params = _recipe_params(entry.recipe, base) if entry.flow == "compress" else dict(entry.parameters)
        deployments.append(_deployment(
            target(flows[entry.flow]), name=entry.name, parameters=params, tags=["shrinkwrap", "scheduled"],
            schedules=[Cron(entry.cron, timezone=entry.timezone, active=entry.active) if entry.cron else
                       Interval(entry.interval, timezone=entry.timezone, active=entry.active)],
            description=f"{entry.flow} every {entry.cron or f'{entry.interval:g} s'} ({entry.timezone})", **kw))
    return deployments


def _entrypoint(f) -> str:
    return {"compress-model": "flows/flow.py:compress_model", "reevaluate-model": "flows/reevaluate.py:reevaluate_model"}[f.name]


def _deployment(f, *, work_pool_name: str | None = None, **kwargs):
    if work_pool_name:
        return {"flow": f, "work_pool_name": work_pool_name, **kwargs}
    return f.to_deployment(**kwargs)


def register_on_pool(deployments: list[dict], pool: str) -> list[str]:
    """Create the process work pool if missing and register each deployment on it (no image build)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    ids = []
    for spec in deployments:
        flow_ = spec.pop("flow")
        ids.append(str(flow_.deploy(build=False, push=False, print_next_steps=False, ignore_warnings=True, **spec)))
    return ids


# ------------------------------------------------------------------------------------------- serve
def start_api(host: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "shrinkwrap", "api", "--host", host, "--port", str(port)],
                            env=dict(os.environ))
    wait_healthy(f"http://{host}:{port}", proc=proc)
    return proc


def _serve_deployments(schedules, schedules_path: str | None, pool: str | None, children: list) -> int:
    base = Path(schedules_path).resolve().parent if schedules_path else ROOT
    deployments = build_deployments(schedules, base=base, work_pool=pool)
    if pool:
        register_on_pool(deployments, pool)
        print(f"deployments registered on work pool {pool!r}; execute runs with: prefect worker start --pool {pool}")
        while children and all(c.poll() is None for c in children):  # keep the server/API we started alive
            time.sleep(1)
        return 0 if not children else 1
    from prefect import serve as prefect_serve

    prefect_serve(*deployments)
    return 0


def serve(*, schedules_path: str | None = None, api: bool = True, host: str = "127.0.0.1", port: int = 8000,
          pool: str | None = None, ui: bool = True) -> int:
    """Blocking: serve (or register on `pool`) the deployments, run the API; Ctrl-C stops everything.
    `ui=False` starts our Prefect server without its dashboard (no effect on a server at PREFECT_API_URL)."""
    from registry.session import ensure_schema

    try:
        schedules = load_schedules(schedules_path)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ensure_schema()
    children: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `docker stop` / kill: stop the children too
    try:
        if not os.environ.get("PREFECT_API_URL"):
            children.append(start_prefect_server(ui=ui))
            print(f"Prefect server at {os.environ['PREFECT_API_URL']}")
            if ui:
                print(f"Prefect dashboard at {dashboard_url()} (start runs: Deployments > {DEPLOYMENT_NAME})",
                      flush=True)
        elif ui:
            print(f"Prefect dashboard (if that server serves one) at {dashboard_url()}", flush=True)
        if api:
            children.append(start_api(host, port))
            print(f"API at http://{host}:{port} (docs at /docs)")
        from prefect.settings import PREFECT_API_URL, temporary_settings

        # Prefect read its settings when first imported; point this process at the server explicitly
        lookup = states_lookup(os.environ["PREFECT_API_URL"])
        reconcile(lookup=lookup)  # runs left `running` by a killed process become `crashed`, now and every 30 s
        _, stop_reconciler = start_reconciler(30.0, lookup=lookup)
        try:
            with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
                return _serve_deployments(schedules, schedules_path, pool, children)
        finally:
            stop_reconciler.set()
    finally:
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
