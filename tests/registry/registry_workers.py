"""Process bodies for the reliability tests (forked by test_reliability.py; not collected by pytest).

`record`: one writer recording runs, stages, artifacts, metrics and versions, one transaction each.
`crash`: register one file, set `ready` at a crash point, then block until the parent SIGKILLs it.
Crash points: `before-rename` (blob bytes in the temp file, not yet moved into place),
`before-commit` (blob durable, row flushed but not committed), `after-commit` (both durable).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import registry.repository as repo
import registry.store
from registry.session import session_scope
from registry.store import ArtifactStore

METRICS_PER_STAGE = 25


def _ready_and_block(ready) -> None:
    ready.set()
    while True:  # wait for SIGKILL from the parent
        signal.pause()


def record(url: str, root: str, worker: int, iterations: int) -> None:
    store = ArtifactStore(root)
    scratch = Path(root).parent / f"scratch-{worker}"
    scratch.mkdir(parents=True, exist_ok=True)
    for i in range(iterations):
        unique = scratch / f"ckpt-{i}.bin"
        unique.write_bytes(f"worker {worker} iteration {i}".encode() * 100)
        shared = scratch / "shared.bin"
        shared.write_bytes(b"identical bytes from every worker" * 100)
        with session_scope(url) as s:
            run = repo.create_run(s, recipe={"worker": worker, "iteration": i}, flow_run_id=f"{worker}-{i}")
            repo.set_run_status(s, run_id=run.id, status="running")
            stage = repo.start_stage(s, run_id=run.id, name="train", params_hash="p", cache_key=f"{worker}-{i}")
            data = repo.register_artifact(s, store, kind="dataset", path=shared, format="bin",
                                          stage_run_id=stage.id)
            ckpt = repo.register_artifact(s, store, kind="checkpoint", path=unique, format="pt",
                                          stage_run_id=stage.id, parents=[data])
            repo.log_metrics(s, metrics={f"m{k}": float(k) for k in range(METRICS_PER_STAGE)}, run_id=run.id,
                             stage_run_id=stage.id, artifact_id=ckpt.id, stage="train", step=i)
            repo.create_version(s, model_name="shared", artifact_id=ckpt.id, run_id=run.id)
            repo.finish_stage(s, stage_id=stage.id, status="completed", outputs={"checkpoint": ckpt.id})
            repo.set_run_status(s, run_id=run.id, status="completed")


def crash(url: str, root: str, point: str, file: str, ready) -> None:
    store = ArtifactStore(root)
    if point == "before-rename":
        real_replace = os.replace

        def replace_then_block(src, dst):
            if str(dst).startswith(str(store.root / "sha256")):
                _ready_and_block(ready)
            real_replace(src, dst)

        registry.store.os.replace = replace_then_block
    with session_scope(url) as s:
        repo.register_artifact(s, store, kind="checkpoint", path=file, format="pt")
        if point == "before-commit":
            _ready_and_block(ready)
    if point == "after-commit":
        _ready_and_block(ready)
    raise SystemExit(f"unknown crash point {point!r}")
