"""Issue 18 end to end: kill -9 a real `shrinkwrap run` inside a stage; the next `shrinkwrap runs` lists
the run `crashed` with the reason. And `shrinkwrap api` starts on a fresh SHRINKWRAP_HOME."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from flows_testing import tiny_mnist

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHRINKWRAP_", "PREFECT_"))}
    return {**env, "SHRINKWRAP_HOME": str(home), "PYTHONPATH": str(ROOT), **extra}


def _cli(*args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shrinkwrap", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_kill_9_in_a_stage_shows_crashed_at_the_next_runs(prefect, tmp_path):
    from prefect.settings import PREFECT_API_URL

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_mnist()))
    env = _env(tmp_path / "home", PREFECT_API_URL=PREFECT_API_URL.value())
    killed = _cli("run", str(recipe), env={**env, "SHRINKWRAP_FAULT": "dataset:kill"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    listing = _cli("runs", env=env)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("1 "))
    assert " crashed " in row and "process" in row, listing.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_api_creates_the_schema_of_a_fresh_home_and_refuses_an_older_one(tmp_path):
    from registry.session import init_db

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shrinkwrap", "api", "--port", str(port)], cwd=ROOT,
                            env=_env(tmp_path / "fresh"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 60, None
        while status is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status
            except OSError:
                time.sleep(0.3)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer in 60 s"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    older = tmp_path / "older"
    older.mkdir()
    init_db(f"sqlite:///{older / 'registry.db'}", revision="0001")
    refused = _cli("api", "--port", str(port), env=_env(older), timeout=60)
    assert refused.returncode == 2 and "shrinkwrap db upgrade" in refused.stderr
