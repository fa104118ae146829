"""The local Prefect server that `shrinkwrap run` starts once and later runs reuse (issue 17): reuse,
a stale pid or port handled, the idle stop, and `shrinkwrap server` driving the same server."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from flows import local_server as ls

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SHRINKWRAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home" / "prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield tmp_path / "home"
    ls.stop_local_server()


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_started_once_reused_then_replaced_when_stale_and_stopped_when_idle(home):
    url = ls.ensure_local_server(idle_s=3)
    state = json.loads(ls.state_file().read_text())
    assert state["url"] == url and ls.healthy(url)

    with ls.active_run():  # a run in progress keeps it up past the idle time
        started = time.monotonic()
        assert ls.ensure_local_server() == url  # reused: no second server
        assert time.monotonic() - started < 5  # a health check, not a start-up (not a timing test: 17 s vs ~0)
        time.sleep(4)
        assert ls.healthy(url)

    _wait(lambda: ls.read_state() is None and not ls.healthy(url), 60, "the idle server did not stop")

    url = ls.ensure_local_server(idle_s=600)
    pid = json.loads(ls.state_file().read_text())["pid"]
    os.kill(pid, signal.SIGKILL)  # the supervisor dies; its state file stays behind
    os.kill(json.loads(ls.state_file().read_text())["server_pid"], signal.SIGKILL)
    assert ls.read_state() is None and not ls.state_file().exists()  # stale: detected and removed
    fresh = ls.ensure_local_server(idle_s=600)
    assert ls.healthy(fresh) and json.loads(ls.state_file().read_text())["pid"] != pid


def test_a_state_file_pointing_at_someone_elses_port_is_stale(home):
    home.mkdir(parents=True)
    ls.state_file().write_text(json.dumps({"pid": os.getpid(), "port": 9, "url": "http://127.0.0.1:9/api"}))
    assert ls.read_state() is None and not ls.state_file().exists()


def test_server_command(home, capsys):
    from shrinkwrap.cli import main

    assert main(["server", "status"]) == 1
    assert "no local Prefect server" in capsys.readouterr().out
    assert main(["server", "start", "--idle", "600"]) == 0
    url = capsys.readouterr().out.strip()
    assert ls.healthy(url)
    assert main(["server", "status"]) == 0 and url in capsys.readouterr().out
    assert main(["server", "stop"]) == 0 and "stopped" in capsys.readouterr().out
    assert not ls.healthy(url)
