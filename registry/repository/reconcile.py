"""Run reconciliation: a run whose process or Prefect flow run is gone becomes `crashed`, with the reason.

A kill -9 (or an OOM kill, a power cut) runs no hook, so nothing marks the registry run; it would stay
`running` forever. Three signs of death, cheapest first:

1. Prefect says so: the caller passes `flow_run_states` {flow_run_id: state type} it looked up (e.g.
   flows.prefect_states.flow_run_states); CRASHED, CANCELLED, FAILED, COMPLETED or GONE (no such flow run)
   while the registry run is still pending/running means the recording process died.
2. The process is gone: `heartbeat_run` stores the worker "host:pid:start" of the process running the
   run; on the same host a missing pid (or one reused by a later process) is certain death.
3. Silence: no heartbeat for longer than `timeout_s` (runs elsewhere, no Prefect answer).

`crashed` is not terminal: a live process that was wrongly declared dead revives its run with its next
`heartbeat_run`. A rerun of the same recipe finds what it resumes from with `latest_crashed_run`.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import RUN_TERMINAL, PipelineRun, StageRun, utcnow
from registry.repository.runs import get_run, set_run_status

DEAD_PREFECT_STATES = frozenset({"CRASHED", "CANCELLED", "FAILED", "COMPLETED", "GONE"})
UNFINISHED = ("pending", "running")


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks since boot (/proc/<pid>/stat field 22); None if no such pid."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one short read
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def worker_id(pid: int | None = None) -> str:
    """"host:pid:start ticks" of this (or `pid`'s) process: unique even when pids are reused."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) if os.path.isdir('/proc') else '?'}"


def worker_alive(worker: str) -> bool | None:
    """True/False for a worker of this host, None where this host cannot tell (another host)."""
    parts = worker.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    pid, start = int(parts[1]), parts[2]
    if os.path.isdir("/proc"):
        now = _start_ticks(pid)
        return now is not None and (now == start or "?" in (start, now))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat_run(session: Session, *, run_id: int, worker: str | None = None) -> PipelineRun:
    """Record that the run's process is alive now (and which process it is); revives a `crashed` run."""
    run = get_run(session, run_id=run_id)
    if run.status in RUN_TERMINAL:
        return run
    if run.status == "crashed":
        set_run_status(session, run_id=run_id, status="running")
        run.error = None
    run.heartbeat_at = utcnow()
    run.worker = worker or worker_id()
    session.flush()
    return run


def _reason(run: PipelineRun, *, timeout_s: float | None, states: dict[str, str] | None,
            now: datetime) -> str | None:
    state = (states or {}).get(run.flow_run_id or "")
    if state in DEAD_PREFECT_STATES:
        return f"its Prefect flow run {run.flow_run_id} is {state}"
    if run.status != "running":
        return None  # a pending run may wait in a queue; only Prefect can tell it is dead
    alive = worker_alive(run.worker) if run.worker else None
    if alive is False:
        return f"its process ({run.worker}) is gone: killed or crashed without recording it"
    if alive or state == "RUNNING" or timeout_s is None:
        return None
    last = run.heartbeat_at or run.started_at or run.created_at
    age = (now - last).total_seconds()
    if age > timeout_s:
        return f"no heartbeat for {age:.0f} s (timeout {timeout_s:g} s) from {run.worker or 'its process'}"
    return None


def reconcile_runs(session: Session, *, timeout_s: float | None,
                   flow_run_states: dict[str, str] | None = None, recipe_hash: str | None = None,
                   now: datetime | None = None) -> list[PipelineRun]:
    """Mark every pending/running run that is dead `crashed` (error = the reason; its running stages
    `failed`); returns those runs. timeout_s None: no heartbeat timeout (liveness and Prefect only)."""
    now = now or utcnow()
    stmt = select(PipelineRun).where(PipelineRun.status.in_(UNFINISHED)).order_by(PipelineRun.id)
    if recipe_hash is not None:
        stmt = stmt.where(PipelineRun.recipe_hash == recipe_hash)
    crashed = []
    for run in session.scalars(stmt).all():
        reason = _reason(run, timeout_s=timeout_s, states=flow_run_states, now=now)
        if reason is None:
            continue
        set_run_status(session, run_id=run.id, status="crashed", error=f"crashed: {reason}")
        for stage in session.scalars(select(StageRun).where(StageRun.run_id == run.id,
                                                            StageRun.status == "running")):
            stage.status, stage.finished_at, stage.error = "failed", now, f"run crashed: {reason}"
        crashed.append(run)
    session.flush()
    return crashed


def latest_crashed_run(session: Session, *, recipe_hash: str, exclude_run_id: int | None = None) -> PipelineRun | None:
    """The newest crashed run of the same recipe (after a liveness-only reconciliation of that recipe's
    runs, so a run killed a moment ago counts): what a rerun records as `resumed_from_id`."""
    reconcile_runs(session, timeout_s=None, recipe_hash=recipe_hash)
    stmt = select(PipelineRun).where(PipelineRun.recipe_hash == recipe_hash, PipelineRun.status == "crashed")
    if exclude_run_id is not None:
        stmt = stmt.where(PipelineRun.id != exclude_run_id)
    return session.scalar(stmt.order_by(PipelineRun.id.desc()).limit(1))
