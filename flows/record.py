"""The bookkeeping every stage shares: registry run/stage rows, cache lookup, artifact registration.

`run_stage(name, run_id=..., params=..., inputs=..., body=...)` is the whole resume protocol:

1. key = cache_key(stage, sha256 of each input artifact, params, code version);
2. a completed StageRun with that key (from any run) whose output artifacts are still in the store ->
   record a `cached` StageRun pointing at the same outputs and return them without running `body`;
3. otherwise commit a `running` StageRun, run `body(ctx)` (which registers its artifacts and metrics
   through `ctx`, each in its own short transaction), then mark the stage `completed` with the
   outputs, or `failed` with the error.

A kill -9 during step 3 leaves a `running` row and maybe unreferenced blobs, never a completed row
without its artifacts, so the next run redoes exactly that stage.

Liveness: every stage heartbeats its registry run (`repo.heartbeat_run`: time and "host:pid:start" of
this process) when it starts, every SHRINKWRAP_HEARTBEAT_S seconds (default 30) while its body runs, and
when it ends; reconciliation (registry/reconciler.py) marks a run `crashed` when that process is gone
or the heartbeat is older than the timeout.

Fault injection for tests and bench/resume.py: `SHRINKWRAP_FAULT=<stage>:raise` raises inside that
stage, `<stage>:kill` SIGKILLs the process there (after the running StageRun is committed).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.cache import cache_key, params_hash
from registry import repository as repo
from registry.config import artifact_root
from registry.session import session_scope
from registry.store import ArtifactStore

log = logging.getLogger("shrinkwrap.flows")


def _logger():
    """The Prefect run logger inside a flow/task run (shows on the terminal and in the UI), else ours."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # no active run context (task.fn(...) in tests, plain scripts)
        return log
FAULT_ENV = "SHRINKWRAP_FAULT"
HEARTBEAT_ENV = "SHRINKWRAP_HEARTBEAT_S"


class InjectedFault(RuntimeError):
    """Raised by `SHRINKWRAP_FAULT=<stage>:raise` (tests of resume and failure handling)."""


@functools.cache
def _store(root: str) -> ArtifactStore:
    return ArtifactStore(root)


def store() -> ArtifactStore:
    return _store(artifact_root())


@dataclass
class StageContext:
    """What a stage body gets: its StageRun id, a scratch folder, and helpers that record into the registry."""

    run_id: int
    stage_id: int
    name: str
    workdir: Path
    artifacts: dict[str, int] = field(default_factory=dict)

    def register(self, role: str, *, kind: str, path: str | Path, format: str, parents=(),
                 metadata: dict[str, Any] | None = None, metrics: Mapping[str, float] | None = None) -> int:
        """Store `path` (file or folder) as an artifact of this stage; returns its id (also in outputs).
        The bytes go into the store first, outside any transaction (a remote store is network I/O); the
        row, its lineage and its metrics are then one short transaction."""
        if not Path(path).exists():
            raise FileNotFoundError(f"stage {self.name!r} produced no {path}; the task must write it before "
                                    "returning it")
        blob = store().put(path)
        with session_scope() as s:
            row = repo.register_blob(s, blob=blob, kind=kind, format=format, stage_run_id=self.stage_id,
                                     parents=[p for p in parents if p is not None], metadata=metadata)
            if metrics:
                repo.log_metrics(s, metrics=_finite(metrics), run_id=self.run_id, stage_run_id=self.stage_id,
                                 artifact_id=row.id, stage=self.name)
            self.artifacts[role] = row.id
            return row.id

    def log(self, metrics: Mapping[str, float], *, step: int | None = None, artifact_id: int | None = None) -> None:
        with session_scope() as s:
            repo.log_metrics(s, metrics=_finite(metrics), run_id=self.run_id, stage_run_id=self.stage_id,
                             artifact_id=artifact_id, stage=self.name, step=step)


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics the registry accepts: finite floats (NaN/inf are dropped and logged, not stored)."""
    out = {}
    for k, v in metrics.items():
        v = float(v)
        if v == v and abs(v) != float("inf"):
            out[k] = v
        else:
            log.warning("metric %s=%s is not finite; not recorded", k, v)
    return out


def _inject_fault(name: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    for item in filter(None, spec.split(",")):
        stage, _, action = item.partition(":")
        if stage != name and stage != name.split("[")[0]:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected fault in stage {name!r} ({FAULT_ENV}={spec!r}); unset it to run normally")


def heartbeat(run_id: int) -> None:
    """Tell the registry this run's process is alive; a failed heartbeat is logged, never raised."""
    try:
        with session_scope() as s:
            repo.heartbeat_run(s, run_id=run_id)
    except Exception as err:  # noqa: BLE001 - liveness bookkeeping must not fail a stage
        log.warning("heartbeat of run %s not recorded: %s", run_id, err)


@contextlib.contextmanager
def heartbeating(run_id: int) -> Iterator[None]:
    """Heartbeat now, every SHRINKWRAP_HEARTBEAT_S seconds (default 30) in a daemon thread, and at exit."""
    interval = float(os.environ.get(HEARTBEAT_ENV) or 30)
    if interval <= 0:
        raise ValueError(f"{HEARTBEAT_ENV} must be a positive number of seconds, got {interval:g}")
    heartbeat(run_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            heartbeat(run_id)

    thread = threading.Thread(target=beat, name=f"shrinkwrap-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        heartbeat(run_id)


def input_shas(inputs: Mapping[str, int | None]) -> dict[str, str]:
    with session_scope() as s:
        return {role: repo.get_artifact(s, artifact_id=aid).sha256 for role, aid in inputs.items() if aid is not None}


def _reusable(outputs: dict[str, Any] | None) -> bool:
    """A cached stage is reusable only if every artifact it produced is still in the store."""
    ids = (outputs or {}).get("artifacts", {})
    with session_scope() as s:
        for aid in ids.values():
            art = repo.get_artifact(s, artifact_id=aid)
            if not store().exists(art.sha256):
                return False
    return True


def run_stage(name: str, *, run_id: int, params: Mapping[str, Any], inputs: Mapping[str, int | None],
              body: Callable[[StageContext], dict[str, Any]], stage_key: str | None = None,
              sources: Iterable[str] = ()) -> dict[str, Any]:
    """Run (or reuse) one stage; returns its outputs: {"artifacts": {role: id}, ...body's extra values}.
    `sources`: the modules whose code is part of the cache key (flows/cache.py)."""
    code_stage = stage_key or name.split("[")[0]
    key = cache_key(code_stage, params={"name": name, **params}, inputs=input_shas(inputs), sources=sources)
    phash = params_hash(params)
    with session_scope() as s:
        done = repo.find_completed_stage(s, cache_key=key)
        done_outputs = done.outputs if done is not None else None
    if done is not None and _reusable(done_outputs):
        heartbeat(run_id)
        with session_scope() as s:
            row = repo.start_stage(s, run_id=run_id, name=name, params_hash=phash, cache_key=key)
            repo.finish_stage(s, stage_id=row.id, status="cached", outputs=done_outputs)
        _logger().info("stage %s: cached (same inputs, parameters and code as stage run %s)", name, done.id)
        return done_outputs
    with session_scope() as s:
        stage_id = repo.start_stage(s, run_id=run_id, name=name, params_hash=phash, cache_key=key).id
    workdir = Path(tempfile.mkdtemp(prefix=f"shrinkwrap-{name.replace('[', '-').rstrip(']')}-"))
    ctx = StageContext(run_id=run_id, stage_id=stage_id, name=name, workdir=workdir)
    try:
        with heartbeating(run_id):
            _inject_fault(name)
            extra = body(ctx) or {}
        outputs = {"artifacts": dict(ctx.artifacts), **extra}
        with session_scope() as s:
            repo.finish_stage(s, stage_id=stage_id, status="completed", outputs=outputs)
        _logger().info("stage %s: completed -> %s", name, {k: v for k, v in outputs.items() if k != "rounds"})
        return json.loads(json.dumps(outputs, default=str))
    except BaseException as err:
        with session_scope() as s:
            repo.finish_stage(s, stage_id=stage_id, status="failed", error=f"{type(err).__name__}: {err}"[:4000])
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def skip_stage(name: str, *, run_id: int, reason: str) -> None:
    """Record a switched-off stage (status `skipped`) so a run's stage list is complete."""
    with session_scope() as s:
        row = repo.start_stage(s, run_id=run_id, name=name)
        repo.finish_stage(s, stage_id=row.id, status="skipped", outputs={"reason": reason})


def artifact_path(artifact_id: int, dest: Path | None = None) -> Path:
    """A local path with the artifact's bytes: the store's file, or a folder materialised under `dest`."""
    with session_scope() as s:
        art = repo.get_artifact(s, artifact_id=artifact_id)
        sha, is_dir, fmt = art.sha256, art.is_dir, art.format
    if not is_dir and store().fs is None:
        return store().path(sha)
    dest = dest or Path(tempfile.mkdtemp(prefix="shrinkwrap-artifact-"))
    if not is_dir:  # an fsspec store (s3://, gs://, ...): a verified local copy
        target = dest / f"{artifact_id}-{fmt}"
        return target if target.is_file() else store().get_file(sha, target)
    target = dest / f"{artifact_id}-{fmt}"
    if not target.exists():  # whole or absent: concurrent stages may ask for the same folder at once
        partial = Path(tempfile.mkdtemp(prefix=f".{artifact_id}-", dir=dest))
        store().materialize_dir(sha, partial)
        try:
            partial.rename(target)
        except OSError:  # another stage renamed its copy first; both are the same bytes
            shutil.rmtree(partial, ignore_errors=True)
    return target


def artifact_meta(artifact_id: int) -> dict[str, Any]:
    with session_scope() as s:
        return dict(repo.get_artifact(s, artifact_id=artifact_id).meta or {})


def plot_paths(run_id: int) -> list[Path]:
    """Local paths of the PNG plots a run produced or reused (via its stages' outputs)."""
    with session_scope() as s:
        ids = [aid for st in repo.list_stages(s, run_id=run_id)
               for role, aid in ((st.outputs or {}).get("artifacts") or {}).items() if role == "plot"]
    return [artifact_path(aid) for aid in ids]
