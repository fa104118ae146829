"""Run reconciliation on a schedule or at a command's start: `reconcile()` once, `start_reconciler()`
in a background thread (what `shrinkwrap serve` runs). The rules are in registry/repository/reconcile.py.

`lookup(flow_run_ids) -> {id: Prefect state type} | None` is passed in (flows.prefect_states.flow_run_states),
so the registry never imports Prefect. The heartbeat timeout is SHRINKWRAP_HEARTBEAT_TIMEOUT_S (default
300 s; a stage heartbeats every SHRINKWRAP_HEARTBEAT_S, default 30 s, see flows/record.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from sqlalchemy import select

from registry import repository as repo
from registry.models import PipelineRun
from registry.session import session_scope

log = logging.getLogger("shrinkwrap.registry")
TIMEOUT_ENV = "SHRINKWRAP_HEARTBEAT_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
Lookup = Callable[[list[str]], dict[str, str] | None]


def heartbeat_timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}; unset it for "
                         f"{DEFAULT_TIMEOUT_S:g} s")
    return value


def reconcile(url: str | None = None, *, timeout_s: float | None = None,
              lookup: Lookup | None = None) -> list[tuple[int, str]]:
    """Mark dead pending/running runs `crashed`; returns [(run id, reason)]. `lookup` is asked for the
    Prefect states of the unfinished runs' flow runs (skipped when there are none)."""
    timeout_s = heartbeat_timeout_s() if timeout_s is None else timeout_s
    with session_scope(url) as s:
        ids = [i for i in s.scalars(select(PipelineRun.flow_run_id).where(
            PipelineRun.status.in_(("pending", "running")), PipelineRun.flow_run_id.is_not(None)))]
        states = lookup(ids) if lookup is not None and ids else None
        crashed = repo.reconcile_runs(s, timeout_s=timeout_s, flow_run_states=states)
        out = [(run.id, run.error or "crashed") for run in crashed]
    for run_id, reason in out:
        log.warning("run %s: %s", run_id, reason)
    return out


def start_reconciler(interval_s: float = 30.0, *, url: str | None = None, timeout_s: float | None = None,
                     lookup: Lookup | None = None) -> tuple[threading.Thread, threading.Event]:
    """A daemon thread that calls `reconcile` every `interval_s`; set the returned event to stop it."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                reconcile(url, timeout_s=timeout_s, lookup=lookup)
            except Exception:  # noqa: BLE001 - a failed round (database restarting) must not end the loop
                log.exception("run reconciliation failed; retrying in %s s", interval_s)

    thread = threading.Thread(target=loop, name="shrinkwrap-reconciler", daemon=True)
    thread.start()
    return thread, stop
