"""A local Prefect server that outlives one `shrinkwrap run`, so only the first run pays its start-up.

Without PREFECT_API_URL, `shrinkwrap run` used to start a temporary Prefect server inside every
invocation (about 17 s on 2 cores). Now it asks `ensure_local_server()`:

1. the state file `$SHRINKWRAP_HOME/prefect-server.json` names a server (pid, port, url) that answers
   /health: use it;
2. otherwise (no file, a dead pid, a port that answers nothing or someone else's server) the stale file
   is removed and a supervisor is started in its own session: it runs `prefect server start` on a free
   loopback port, writes the state file once the server is healthy, and stops the server after
   `SHRINKWRAP_PREFECT_IDLE_S` seconds (default 600) during which no run was active.

Each run marks itself active with a file `$SHRINKWRAP_HOME/prefect-server.d/<pid>` (removed at the end;
a file whose pid is gone does not count), so the idle clock starts when the last run ends. `shrinkwrap
server start|stop|status` drive the same server by hand; `shrinkwrap serve` keeps starting its own.

    python -m flows.local_server --port 4311 --idle 600     # the supervisor (started for you)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from registry.config import shrinkwrap_home

IDLE_ENV = "SHRINKWRAP_PREFECT_IDLE_S"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 180.0
DEFAULT_PORT = int(os.environ.get("SHRINKWRAP_PREFECT_PORT", "4200"))  # `shrinkwrap serve`'s server


def state_file() -> Path:
    return shrinkwrap_home() / "prefect-server.json"


def active_dir() -> Path:
    return shrinkwrap_home() / "prefect-server.d"


def idle_seconds() -> float:
    raw = os.environ.get(IDLE_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_IDLE_S
    except ValueError:
        raise ValueError(f"{IDLE_ENV}={raw!r} is not a number of seconds; set it to e.g. 600") from None
    if value < 0:
        raise ValueError(f"{IDLE_ENV}={raw!r} must be >= 0 seconds")
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(url: str) -> bool:
    """Whether the server at `url` (an API URL or a base URL) answers /health with 200."""
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(url: str, timeout_s: float = 120, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy(url):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before {url} became healthy")
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not become healthy within {timeout_s:.0f} s")


# No request leaves the machine: server analytics, client telemetry and the UI's promotional banners are
# off, and the dashboard opens on the V1 UI: Prefect 3.8's V2 UI initialises Amplitude on every load, which
# fetches its remote config from sr-client-cfg.amplitude.com whatever the analytics setting says.
OFFLINE_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
               "PREFECT_SERVER_UI_V2_ENABLED": "false", "DO_NOT_TRACK": "1"}


def server_env(port: int, *, ui: bool = True, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of `prefect server start` on 127.0.0.1:`port`, dashboard on or off."""
    env = {**(os.environ if base is None else base), **OFFLINE_ENV, "PREFECT_UI_ENABLED": str(ui).lower()}
    if ui:  # the dashboard calls the API at this address from the browser: the loopback server itself
        env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    return env


def dashboard_url(api_url: str | None = None) -> str:
    """The Prefect dashboard of the server at `api_url` (default PREFECT_API_URL): the API URL less `/api`."""
    api_url = api_url or os.environ.get("PREFECT_API_URL", "")
    return api_url.removesuffix("/").removesuffix("/api") + "/"


def start_prefect_server(port: int = DEFAULT_PORT, *, ui: bool = True) -> subprocess.Popen:
    """`prefect server start` as a child process, with the dashboard unless `ui=False`; sets
    PREFECT_API_URL for us and our children."""
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=server_env(port, ui=ui))
    url = f"http://127.0.0.1:{port}/api"
    wait_healthy(url, proc=proc)
    os.environ["PREFECT_API_URL"] = url
    return proc


def read_state() -> dict | None:
    """The recorded server if its supervisor is alive and it answers; a stale file is removed."""
    path = state_file()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        state = None
    if state and _pid_alive(int(state.get("pid", 0))) and healthy(state["url"]):
        return state
    path.unlink(missing_ok=True)  # a killed supervisor, a reused pid or a port someone else answers on
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_local_server(*, idle_s: float | None = None, timeout_s: float = START_TIMEOUT_S) -> str:
    """The API URL of a healthy local Prefect server, starting the supervisor if none is up. Two runs
    starting at once start one server: the second waits on a lock and then finds the first's."""
    import fcntl

    state = read_state()
    if state is not None:
        return state["url"]
    shrinkwrap_home().mkdir(parents=True, exist_ok=True)
    with open(shrinkwrap_home() / "prefect-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start(idle_s, timeout_s)


def _start(idle_s: float | None, timeout_s: float) -> str:
    state = read_state()
    if state is not None:
        return state["url"]
    idle = idle_seconds() if idle_s is None else idle_s
    log = open(shrinkwrap_home() / "prefect-server.log", "ab")  # noqa: SIM115 - handed to the child
    cmd = [sys.executable, "-m", "flows.local_server", "--port", str(_free_port()), "--idle", str(idle)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=dict(os.environ))
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state()
        if state is not None:
            return state["url"]
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"the local Prefect server did not start within {timeout_s:.0f} s; see "
                       f"{shrinkwrap_home() / 'prefect-server.log'}, or set PREFECT_API_URL to a running server")


def stop_local_server(timeout_s: float = 30.0) -> bool:
    """Stop the recorded server; False if none was running."""
    state = read_state()
    if state is None:
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(int(state["pid"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    state_file().unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def active_run() -> Iterator[None]:
    """Mark this process as using the local server, so the supervisor does not stop it under us."""
    marker = active_dir() / str(os.getpid())
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)
        os.utime(active_dir())  # the idle clock starts now


def _active_runs() -> int:
    folder = active_dir()
    live = 0
    for marker in folder.glob("*") if folder.is_dir() else ():
        if marker.name.isdigit() and _pid_alive(int(marker.name)):
            live += 1
        else:
            marker.unlink(missing_ok=True)
    return live


def _last_activity(started: float) -> float:
    folder = active_dir()
    return max(started, folder.stat().st_mtime if folder.is_dir() else started)


def supervise(port: int, idle_s: float) -> int:
    """Run `prefect server start` on `port`; record it; stop it after `idle_s` without active runs."""
    server = start_prefect_server(port)
    url = f"http://127.0.0.1:{port}/api"
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "server_pid": server.pid, "port": port, "url": url,
                               "idle_s": idle_s, "started": time.time()}))
    tmp.replace(state_file())
    started = time.time()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop and server.poll() is None:
            if _active_runs() == 0 and time.time() - _last_activity(started) > idle_s:
                break
            time.sleep(1.0)
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(state_file().read_text()).get("pid") == os.getpid():
                state_file().unlink()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="supervise a local Prefect server (see flows/local_server.py)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle", type=float, default=DEFAULT_IDLE_S)
    args = parser.parse_args(argv)
    return supervise(args.port, args.idle)


if __name__ == "__main__":
    sys.exit(main())
