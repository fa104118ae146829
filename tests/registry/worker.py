"""Subprocess body for the reliability tests (run as a script, not collected by pytest).

    python worker.py record URL ROOT WORKER ITERATIONS   record runs/stages/artifacts/metrics/versions
    python worker.py crash URL ROOT POINT FILE            register FILE, print READY at POINT, then block

Crash points: `before-rename` (blob bytes written to the temp file, not yet moved into place),
`before-commit` (blob durable, row flushed but not committed), `after-commit` (both durable).
The parent SIGKILLs the process once it prints READY.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import registry.repository as repo  # noqa: E402
import registry.store  # noqa: E402
from registry.session import session_scope  # noqa: E402
from registry.store import ArtifactStore  # noqa: E402

METRICS_PER_STAGE = 25


def _ready_and_block() -> None:
    print("READY", flush=True)
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


def crash(url: str, root: str, point: str, file: str) -> None:
    store = ArtifactStore(root)
    if point == "before-rename":
        real_replace = os.replace

        def replace_then_block(src, dst):
            if str(dst).startswith(str(store.root / "sha256")):
                _ready_and_block()
            real_replace(src, dst)

        registry.store.os.replace = replace_then_block
    with session_scope(url) as s:
        repo.register_artifact(s, store, kind="checkpoint", path=file, format="pt")
        if point == "before-commit":
            _ready_and_block()
    if point == "after-commit":
        _ready_and_block()
    raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "record":
        record(rest[0], rest[1], int(rest[2]), int(rest[3]))
    elif mode == "crash":
        crash(*rest)
    else:
        raise SystemExit(f"unknown mode {mode!r}; use record or crash")
