"""Reliability with real processes: 8 concurrent writers lose nothing and never duplicate a version
number; a SIGKILL at the dangerous moments of an artifact registration leaves no row without its blob
(and any blob without a row is reported by fsck and removed by gc). Both SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal

import pytest
import registry_workers
from sqlalchemy import func, select

import registry.repository as repo
from registry.models import Artifact, ArtifactEdge, Metric, ModelVersion, PipelineRun, StageRun
from registry.session import session_scope

PROCESSES, ITERATIONS = 8, 5
# Real OS processes forked from a clean fork server, not from pytest itself: by the time a full run gets
# here the pytest process holds Prefect/torch threads and open DB handles, which a plain fork copies.
FORK = multiprocessing.get_context("forkserver")
FORK.set_forkserver_preload(["registry.repository", "registry.store", "registry_workers"])


def test_concurrent_writers_lose_nothing(url, tmp_path):
    root = tmp_path / "artifacts"
    with session_scope(url) as s:
        repo.create_model(s, name="shared")
    procs = [FORK.Process(target=registry_workers.record, args=(url, str(root), w, ITERATIONS))
             for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"writer {p.name} failed (exit code {p.exitcode}); its traceback is above"
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
    ready = FORK.Event()
    proc = FORK.Process(target=registry_workers.crash, args=(url, str(root), point, str(src), ready))
    proc.start()
    try:
        reached = ready.wait(timeout=60)  # returns as soon as the child is at its crash point
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    assert reached, f"the writer never reached {point} (exit code {proc.exitcode})"
    assert proc.exitcode == -signal.SIGKILL
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


def test_fsck_and_gc_commands(url, tmp_path, capsys):
    from shrinkwrap.cli import main as shrinkwrap

    root = tmp_path / "artifacts"
    store = repo_store(root)
    src = tmp_path / "a.bin"
    src.write_bytes(b"kept")
    with session_scope(url) as s:
        kept = repo.register_artifact(s, store, kind="checkpoint", path=src, format="pt")
        gone = repo.register_blob(s, blob=store.put_bytes(b"lost"), kind="checkpoint", format="pt")
    orphan = store.put_bytes(b"nobody references me")
    store.delete(gone.sha256)  # simulate a lost file: a row without its blob
    assert shrinkwrap(["db", "fsck", "--url", url, "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"[{gone.id}]" in out and "1 unreferenced blob" in out
    assert shrinkwrap(["db", "gc", "--url", url, "--root", str(root), "--grace-seconds", "0"]) == 0
    assert not store.exists(orphan.sha256) and store.verify(kept.sha256) == 4
