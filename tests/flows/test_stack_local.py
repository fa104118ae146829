"""Integration: scripts/stack-local starts the docker-compose services as local processes (Prefect server
on PostgreSQL, registry migration, deployments on a process work pool, a process worker, the API); a
recipe POSTed to /runs runs on the worker to completion and its versions appear in the registry."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import httpx
import pytest
from flows_testing import ROOT, tiny_mnist
from scale_testing import STACK, free_port, stack_environment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHRINKWRAP_", "PREFECT_"))}
    base |= {"STACK_DIR": str(tmp_path / "stack"), "STACK_NAME": f"sw_stack_{uuid.uuid4().hex[:8]}",
             "PREFECT_PORT": str(free_port()), "API_PORT": str(free_port()), "DROP": "1"}
    try:
        subprocess.run([str(STACK), "up"], env=base, check=True, timeout=420)
        yield stack_environment(base), f"http://127.0.0.1:{base['API_PORT']}"
    finally:
        subprocess.run([str(STACK), "down"], env=base, timeout=120)
        logs = tmp_path / "stack" / "logs"
        for log in sorted(logs.glob("*.log")) if logs.exists() else []:
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")


def test_post_runs_executes_on_the_worker_and_registers_versions(stack):
    env, api = stack
    dashboard = env["PREFECT_API_URL"].removesuffix("api")  # the Prefect dashboard is on by default
    page = httpx.get(dashboard, follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:200]
    token = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "shrinkwrap", "token", "create",
                            "--scope", "admin"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    recipe = tiny_mnist(name="mnist-stack")
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        response = client.post("/runs", content=json.dumps(recipe), headers={"content-type": "application/json"})
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]
        deadline = time.monotonic() + 420
        status = None
        while time.monotonic() < deadline:
            run = client.get(f"/runs/{run_id}").json()
            status = run["status"]
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(2)
        assert status == "completed", run
        assert {st["name"] for st in run["stages"]} >= {"dataset", "distill", "prune", "register"}
        versions = client.get("/models/mnist-stack/versions").json()
        assert versions["count"] == 3
        staging = client.get("/models/mnist-stack/aliases/staging")
        assert staging.status_code == 200, staging.text
