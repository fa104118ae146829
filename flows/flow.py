"""The `compress-model` flow: teacher -> teacher data -> distill -> prune -> quantize (one branch per variant,
in parallel) -> evaluate -> export -> register versions and apply promotion gates.

The flow owns the registry PipelineRun: it opens it (recipe JSON + hash, Prefect flow-run id, git commit,
library versions), marks it completed at the end, and its `on_failure` / `on_cancellation` / `on_crashed`
hooks mark it failed or cancelled. Stages are tasks in flows/stages.py; every future is resolved before
the flow finishes, so a failed variant branch fails the flow after its siblings have finished.

    from flows.flow import compress_model
    compress_model(Recipe.from_yaml("recipes/mnist.yaml"))  # flows.recipe.Recipe   # a temporary Prefect server if none is set
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.futures import wait

from compress.export import library_versions
from compress.tasks import get_task
from flows import stages
from flows.cache import ROOT
from flows.links import link_flow_run
from flows.recipe import AnyRecipe
from flows.record import skip_stage
from registry import repository as repo
from registry.config import run_id_from_tags
from registry.session import session_scope

# Prefect warns on every sync task with a timeout that runs in a worker thread (the variant fan-out): the
# timeout is still enforced when the blocking call returns, which is what a stage timeout is for here.
logging.getLogger("prefect.task_runs").addFilter(
    lambda record: "configured for this task, but the task is running in a worker thread" not in record.getMessage())


class _Once(logging.Filter):
    """bitsandbytes' int8 CPU matmul logs on every forward that it casts fp32 inputs to fp16: once is enough."""

    seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "inputs will be cast" not in msg:
            return True
        first = msg not in self.seen
        self.seen.add(msg)
        return first


logging.getLogger("bitsandbytes.autograd._functions").addFilter(_Once())

FLOW_NAME = "compress-model"
def git_commit() -> str | None:
    if not (ROOT / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _api_run_id() -> int | None:
    """The registry run `POST /runs` created for this flow run (tag `shrinkwrap-run:<id>`), if any."""
    from prefect.runtime import flow_run

    return run_id_from_tags(flow_run.tags)


def _wait_for_run(session, run_id: int, timeout_s: float = 30.0):
    """The API commits its pending run right after creating the flow run; give that commit a moment."""
    from registry.errors import NotFound

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return repo.get_run(session, run_id=run_id)
        except NotFound:
            if time.monotonic() > deadline:
                raise
            session.rollback()
            time.sleep(0.5)


def open_run(recipe) -> int:
    """Create the registry run (or adopt the pending one the API created), record the crashed run of the
    same recipe it resumes, if any, mark it running and send its first heartbeat."""
    flow_run_id = _flow_run_id()
    recipe_json = recipe.model_dump(mode="json")
    with session_scope() as s:
        existing = _api_run_id()
        if existing is not None:
            run = _wait_for_run(s, existing)
            run.flow_run_id = run.flow_run_id or flow_run_id
            run.git_commit = run.git_commit or git_commit()
            run.library_versions = run.library_versions or library_versions()
            crashed = repo.latest_crashed_run(s, recipe_hash=run.recipe_hash, exclude_run_id=run.id)
            run.resumed_from_id = run.resumed_from_id or (crashed.id if crashed else None)
        else:
            crashed = repo.latest_crashed_run(s, recipe_hash=repo.recipe_hash(recipe_json))
            run = repo.create_run(s, recipe=recipe_json, flow_run_id=flow_run_id, git_commit=git_commit(),
                                  library_versions=library_versions(), resumed_from_id=crashed.id if crashed else None)
        repo.set_run_status(s, run_id=run.id, status="running")
        repo.heartbeat_run(s, run_id=run.id)
        return run.id


def _mark_run(flow_run, status: str, error: str | None) -> None:
    """Hook body: find the registry run of this Prefect flow run and give it a terminal status."""
    try:
        with session_scope() as s:
            tagged = run_id_from_tags(flow_run.tags)
            run = (repo.get_run(s, run_id=tagged) if tagged is not None
                   else repo.get_run_by_flow_run_id(s, flow_run_id=str(flow_run.id)))
            if run.status not in ("completed", "failed", "cancelled"):
                repo.set_run_status(s, run_id=run.id, status=status, error=error)
    except LookupError:  # failed before the registry run was opened (e.g. an unreachable database)
        return


def _on_failure(flow_, flow_run, state) -> None:
    _mark_run(flow_run, "failed", state.message or "flow run failed")


def _on_cancellation(flow_, flow_run, state) -> None:
    _mark_run(flow_run, "cancelled", state.message or "cancelled")


def _resolve(futures: dict[str, Any]) -> dict[str, Any]:
    """Wait for every future, then return results; raises the first failure (after all finished)."""
    wait([f for f in futures.values() if f is not None])
    return {name: (f.result() if f is not None else None) for name, f in futures.items()}


def _stage(stage: str, recipe, run_id: int, fn, *args) -> dict[str, Any] | None:
    """Run `fn` if the task says `stage` is enabled for this recipe, else record it as skipped."""
    if get_task(recipe.task).enabled(stage, recipe):
        return fn(run_id, recipe, *args)
    skip_stage(stage, run_id=run_id, reason=f"{stage} is switched off in the recipe")
    return None


def _artifact(result: dict[str, Any] | None, role: str) -> int | None:
    return result["artifacts"][role] if result is not None else None


@flow(name=FLOW_NAME, on_failure=[_on_failure], on_crashed=[_on_failure], on_cancellation=[_on_cancellation],
      persist_result=False, log_prints=True)
def compress_model(recipe: AnyRecipe) -> dict[str, Any]:
    """Compress a teacher into small exported variants, as the recipe says; returns a summary dict."""
    from flows.summary import publish_summary

    task = get_task(recipe.task)
    if hasattr(task, "preflight"):  # cheap checks of the user's files before any stage (optional in a task)
        task.preflight(recipe)
    run_id = open_run(recipe)
    link_flow_run(run_id)  # registry run <-> Prefect flow run, before any stage can fail
    dataset_id = stages.dataset_stage(run_id, recipe)["artifacts"]["dataset"]
    teacher_id = _artifact(_stage("teacher", recipe, run_id, stages.teacher_stage, dataset_id), "teacher")
    soft_id = _artifact(_stage("teacher_data", recipe, run_id, stages.teacher_data_stage, dataset_id, teacher_id),
                        "soft_labels")
    student = stages.distill_stage(run_id, recipe, dataset_id, soft_id, teacher_id)
    checkpoint_id = student["artifacts"]["checkpoint"]
    pruned = _stage("prune", recipe, run_id, stages.prune_stage, dataset_id, checkpoint_id, teacher_id)
    checkpoint_id = _artifact(pruned, "checkpoint") or checkpoint_id

    variants = recipe.quantize.active()
    lineage = {"dataset": dataset_id, "teacher": teacher_id, "soft_labels": soft_id,
               "student": student["artifacts"]["checkpoint"], "pruned": checkpoint_id}
    # One branch per variant. A task whose models load through transformers runs them one after the other
    # (`parallel_variants = False`): from_pretrained's empty-weights init patches nn.Module globally, so a
    # second thread building a model at that moment gets meta tensors.
    parallel = getattr(task, "parallel_variants", True)
    quantized, evaluated, exported = {}, {}, {}
    for v in variants:
        quantized[v.name] = stages.quantize_stage.submit(run_id, recipe, v, checkpoint_id, dataset_id)
        evaluated[v.name] = (stages.evaluate_stage.submit(run_id, recipe, v, quantized[v.name], dataset_id,
                                                          teacher_id) if recipe.evaluate.enabled else None)
        exported[v.name] = (stages.export_stage.submit(run_id, recipe, v, quantized[v.name], evaluated[v.name],
                                                       checkpoint_id, lineage) if recipe.export.enabled else None)
        if not parallel:
            wait([f for f in (quantized[v.name], evaluated[v.name], exported[v.name]) if f is not None])
    futures = {**{f"q:{k}": f for k, f in quantized.items()}, **{f"e:{k}": f for k, f in evaluated.items()},
               **{f"x:{k}": f for k, f in exported.items()}}
    results = _resolve(futures)
    evals = {v.name: results[f"e:{v.name}"] for v in variants}
    exports = {v.name: results[f"x:{v.name}"] for v in variants if results[f"x:{v.name}"] is not None}

    registered = stages.register_stage(run_id, recipe, exports) if recipe.promote.enabled and exports else None
    summary = {"run_id": run_id, "model": recipe.name, "teacher": teacher_id, "student": lineage["student"],
               "pruned": checkpoint_id,
               "variants": {v.name: {"technique": v.technique, "metrics": (evals[v.name] or {}).get("metrics", {}),
                                     "export": (exports.get(v.name) or {}).get("path")} for v in variants},
               "registered": registered}
    publish_summary(recipe, summary)
    with session_scope() as s:
        repo.set_run_status(s, run_id=run_id, status="completed")
    return summary


def dask_task_runner(address: str | None = None, workers: int | None = None):
    """A prefect-dask DaskTaskRunner: on the existing cluster at `address` (`tcp://host:8786`, started with
    `dask scheduler` / `dask worker`), else on a LocalCluster of `workers` single-threaded processes."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as err:
        raise ImportError("the Dask task runner needs prefect-dask: pip install 'shrinkwrap[dask]'") from err
    if address:
        return DaskTaskRunner(address=address)
    workers = workers or int(os.environ.get("SHRINKWRAP_DASK_WORKERS", "2"))
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


def with_task_runner(flow_=None, *, dask_address: str | None = None):
    """`compress_model` with the task runner SHRINKWRAP_TASK_RUNNER asks for: `threads` (default, Prefect's
    ThreadPoolTaskRunner) or `dask` (prefect-dask, for parameter sweeps with many variants). A Dask scheduler
    address (`dask_address`, else SHRINKWRAP_DASK_ADDRESS) runs the variant fan-out on that existing cluster
    and implies `dask`; without one, `dask` starts a local cluster of SHRINKWRAP_DASK_WORKERS processes."""
    flow_ = flow_ or compress_model
    address = dask_address or os.environ.get("SHRINKWRAP_DASK_ADDRESS") or None
    kind = os.environ.get("SHRINKWRAP_TASK_RUNNER") or ("dask" if address else "threads")
    if kind not in ("threads", "dask"):
        raise ValueError(f"SHRINKWRAP_TASK_RUNNER={kind!r}; expected 'threads' or 'dask'")
    if kind == "threads" and address:
        raise ValueError(f"a Dask address ({address!r}) was given but SHRINKWRAP_TASK_RUNNER=threads; "
                         "unset SHRINKWRAP_TASK_RUNNER (or set it to 'dask') to use the cluster")
    if kind == "threads":
        return flow_
    return flow_.with_options(task_runner=dask_task_runner(address))


def export_locations(summary: dict[str, Any]) -> dict[str, Path]:
    return {name: Path(v["export"]) for name, v in summary["variants"].items() if v.get("export")}
