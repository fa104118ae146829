"""Reliability with real processes: 8 concurrent writers lose nothing and never duplicate a version
number; a SIGKILL at the dangerous moments of an artifact registration leaves no row without its blob
(and any blob without a row is reported by fsck and removed by gc). Both SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import registry.repository as repo
from registry.models import Artifact, ArtifactEdge, Metric, ModelVersion, PipelineRun, StageRun
from registry.session import session_scope

WORKER = Path(__file__).with_name("worker.py")
ROOT = Path(__file__).resolve().parents[2]
PROCESSES, ITERATIONS = 8, 3


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_ready(proc: subprocess.Popen, deadline_s: float = 60.0) -> None:
    """Poll the child's stdout for READY until a deadline (no sleeps)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if sel.select(timeout=end - time.monotonic()):
            line = proc.stdout.readline()
            if line.strip() == "READY":
                return
            if not line:  # EOF: the child died
                raise AssertionError(f"worker exited early (rc={proc.wait()}): {proc.stderr.read()}")
    proc.kill()
    raise AssertionError("worker never reached its crash point")


def test_concurrent_writers_lose_nothing(url, tmp_path):
    root = tmp_path / "artifacts"
    with session_scope(url) as s:
        repo.create_model(s, name="shared")
    procs = [_spawn("record", url, str(root), str(w), str(ITERATIONS)) for w in range(PROCESSES)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    n = PROCESSES * ITERATIONS
    with session_scope(url) as s:
        count = lambda model: s.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(PipelineRun) == n and count(StageRun) == n
        assert count(Artifact) == 2 * n and count(ArtifactEdge) == n
        assert count(Metric) == n * 25
        assert s.scalar(select(func.count()).where(PipelineRun.status == "completed")) == n
        numbers = sorted(s.scalars(select(ModelVersion.version)))
        assert numbers == list(range(1, n + 1)), "version numbers must be 1..n without gaps or duplicates"
        assert len(set(s.scalars(select(Artifact.sha256).where(Artifact.kind == "dataset")))) == 1
        assert repo.check_store(s, repo_store(root)) == {"missing": [], "orphans": []}
        store = repo_store(root)
        for sha in set(s.scalars(select(Artifact.sha256))):
            store.verify(sha)
    assert len(list(store.iter_blobs())) == n + 1  # unique checkpoints + one shared dataset blob


def repo_store(root):
    from registry.store import ArtifactStore

    return ArtifactStore(root)


@pytest.mark.parametrize("point", ["before-rename", "before-commit", "after-commit"])
def test_sigkill_mid_registration_leaves_no_half_artifact(url, tmp_path, point):
    root = tmp_path / "artifacts"
    data = f"checkpoint bytes killed at {point}".encode() * 1000
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / "ckpt.pt"
    src.write_bytes(data)
    proc = _spawn("crash", url, str(root), point, str(src))
    try:
        _wait_for_ready(proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    store = repo_store(root)
    with session_scope(url) as s:
        rows = list(s.scalars(select(Artifact)))
        report = repo.check_store(s, store)
        assert report["missing"] == [], "a committed row must always have its blob"
        if point == "after-commit":
            assert [r.sha256 for r in rows] == [sha] and store.verify(sha) == len(data)
            assert report["orphans"] == []
            return
        assert rows == [], "an uncommitted registration must leave no row"
        # what may remain is unreferenced (blob) or outside sha256/ (temp file): fsck sees it, gc removes it
        assert report["orphans"] == ([sha] if point == "before-commit" else [])
        assert store.exists(sha) == (point == "before-commit")
        kept = repo.collect_garbage(s, store)  # default grace period: fresh leftovers are kept
        assert kept["blobs"] == [] and kept["temp_files"] == []
        removed = repo.collect_garbage(s, store, grace_seconds=0)
        assert removed["blobs"] == report["orphans"] and len(removed["temp_files"]) == (point == "before-rename")
        assert list(store.iter_blobs()) == [] and list((root / "tmp").iterdir()) == []
        art = repo.register_artifact(s, store, kind="checkpoint", path=src, format="pt")  # a retry works
    assert store.verify(art.sha256) == len(data)
