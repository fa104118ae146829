"""Artifacts (files or directories in the content-addressed store) and their lineage edges.

`register_artifact` writes the blob first (durable: fsync + rename) and only then adds the row to the
caller's transaction, so a committed row always has its bytes (see registry/store.py for the crash
invariant). `artifact_lineage` walks parent edges back to the roots (teacher, dataset).
`collect_garbage` deletes blobs no row references (after a grace period) and stale temp files.

Large files on SQLite: a write transaction holds the database lock, so copy big blobs *before* opening
it: `blob = store.put(path)` outside the scope, then `register_blob(session, blob=blob, ...)` inside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from registry.errors import InvalidState, NotFound
from registry.models import ARTIFACT_KINDS, Artifact, ArtifactEdge, StageRun
from registry.repository._util import get_row, paginate
from registry.store import ArtifactStore, Blob

GC_GRACE_SECONDS = 3600.0  # longer than any transaction between writing a blob and committing its row


def register_artifact(session: Session, store: ArtifactStore, *, kind: str, path: str | os.PathLike,
                      format: str, stage_run_id: int | None = None, parents: Iterable[int | Artifact] = (),
                      metadata: dict[str, Any] | None = None, stage: str | None = None) -> Artifact:
    """Store `path` (file or directory) and add its Artifact row + one edge per parent.

    `stage` names the edge (defaults to the stage run's name). Same bytes twice -> one stored blob
    (two rows, each with its own lineage)."""
    _check_kind(kind)
    path = Path(path)
    if not path.exists():
        raise NotFound(f"cannot register {kind} artifact: {path} does not exist")
    parent_ids = _parent_ids(session, parents)  # validate before writing bytes
    blob = store.put(path)
    return register_blob(session, blob=blob, kind=kind, format=format, stage_run_id=stage_run_id,
                         parents=parent_ids, metadata=metadata, stage=stage)


def register_blob(session: Session, *, blob: Blob, kind: str, format: str, stage_run_id: int | None = None,
                  parents: Iterable[int | Artifact] = (), metadata: dict[str, Any] | None = None,
                  stage: str | None = None) -> Artifact:
    """Add the row for a blob already in the store (e.g. written with `store.put_bytes`)."""
    _check_kind(kind)
    parent_ids = _parent_ids(session, parents)
    if stage is None and stage_run_id is not None:
        stage_run = session.get(StageRun, stage_run_id)
        if stage_run is None:
            raise NotFound(f"stage run {stage_run_id} not found; start it with start_stage first")
        stage = stage_run.name
    row = Artifact(kind=kind, uri=blob.uri, sha256=blob.sha256, bytes=blob.bytes, format=format,
                   is_dir=blob.is_dir, stage_run_id=stage_run_id, meta=metadata)
    session.add(row)
    session.flush()
    for pid in parent_ids:
        session.add(ArtifactEdge(parent_id=pid, child_id=row.id, stage=stage))
    session.flush()
    return row


def add_edge(session: Session, *, parent_id: int, child_id: int, stage: str | None = None) -> ArtifactEdge:
    get_artifact(session, artifact_id=parent_id)
    get_artifact(session, artifact_id=child_id)
    if parent_id == child_id or child_id in {n.id for n in artifact_lineage(session, artifact_id=parent_id)["nodes"]}:
        raise InvalidState(f"edge {parent_id} -> {child_id} would make a cycle in the lineage graph")
    edge = ArtifactEdge(parent_id=parent_id, child_id=child_id, stage=stage)
    session.add(edge)
    session.flush()
    return edge


def get_artifact(session: Session, *, artifact_id: int) -> Artifact:
    return get_row(session, Artifact, artifact_id, f"artifact {artifact_id} not found")


def list_artifacts(session: Session, *, kind: str | None = None, stage_run_id: int | None = None,
                   run_id: int | None = None, sha256: str | None = None, limit: int = 100,
                   offset: int = 0) -> tuple[list[Artifact], int]:
    """Newest first, filtered by kind / producing stage / producing run / content hash."""
    stmt = select(Artifact).order_by(Artifact.id.desc())
    if kind is not None:
        _check_kind(kind)
        stmt = stmt.where(Artifact.kind == kind)
    if stage_run_id is not None:
        stmt = stmt.where(Artifact.stage_run_id == stage_run_id)
    if run_id is not None:
        stmt = stmt.join(StageRun, Artifact.stage_run_id == StageRun.id).where(StageRun.run_id == run_id)
    if sha256 is not None:
        stmt = stmt.where(Artifact.sha256 == sha256)
    return paginate(session, stmt, limit=limit, offset=offset)


def artifact_lineage(session: Session, *, artifact_id: int, max_depth: int = 1000) -> dict[str, list]:
    """Every ancestor of an artifact (itself included) and the edges between them.

    Returns {"nodes": [Artifact rows, the start first, then by id], "edges": [ArtifactEdge rows]}.
    Two queries whatever the depth: a recursive CTE collects the ancestor edges, then the nodes."""
    start = get_artifact(session, artifact_id=artifact_id)
    base = select(ArtifactEdge.id, ArtifactEdge.parent_id, literal(1).label("depth")).where(
        ArtifactEdge.child_id == artifact_id)
    up = base.cte("ancestors", recursive=True)
    step = select(ArtifactEdge.id, ArtifactEdge.parent_id, (up.c.depth + 1).label("depth")).join(
        up, ArtifactEdge.child_id == up.c.parent_id).where(up.c.depth < max_depth)
    up = up.union_all(step)  # add_edge refuses cycles; max_depth bounds the walk regardless
    edges = list(session.scalars(select(ArtifactEdge).where(ArtifactEdge.id.in_(select(up.c.id)))
                                 .order_by(ArtifactEdge.id)))
    ids = {e.parent_id for e in edges} - {start.id}
    nodes = list(session.scalars(select(Artifact).where(Artifact.id.in_(ids)).order_by(Artifact.id))) if ids else []
    return {"nodes": [start, *nodes], "edges": edges}


def referenced_blobs(session: Session, store: ArtifactStore) -> set[str]:
    """sha256 of every blob a row needs: the rows' blobs plus the files listed by directory manifests."""
    needed: set[str] = set()
    for sha, is_dir in session.execute(select(Artifact.sha256, Artifact.is_dir).distinct()):
        needed.add(sha)
        if is_dir and store.exists(sha):
            needed.update(e["sha256"] for e in store.read_manifest(sha))
    return needed


def check_store(session: Session, store: ArtifactStore) -> dict[str, list]:
    """fsck: {"missing": [artifact ids whose blob is absent], "orphans": [blobs no row references]}."""
    missing = [aid for aid, sha in session.execute(select(Artifact.id, Artifact.sha256).order_by(Artifact.id))
               if not store.exists(sha)]
    needed = referenced_blobs(session, store)
    return {"missing": missing, "orphans": sorted(set(store.iter_blobs()) - needed)}


def collect_garbage(session: Session, store: ArtifactStore, *, grace_seconds: float = GC_GRACE_SECONDS,
                    dry_run: bool = False) -> dict[str, list]:
    """Delete unreferenced blobs and temp files older than `grace_seconds`. Returns what was (or would be)
    removed: {"blobs": [sha256...], "temp_files": [paths...]}."""
    needed = referenced_blobs(session, store)
    blobs = [sha for sha in store.iter_blobs() if sha not in needed and store.age_seconds(sha) >= grace_seconds]
    temps = store.stale_temp_files(grace_seconds)
    if not dry_run:
        for sha in blobs:
            store.delete(sha)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return {"blobs": blobs, "temp_files": [str(t) for t in temps]}


def _parent_ids(session: Session, parents: Iterable[int | Artifact]) -> list[int]:
    ids = list(dict.fromkeys(p.id if isinstance(p, Artifact) else int(p) for p in parents))
    if ids:
        found = set(session.scalars(select(Artifact.id).where(Artifact.id.in_(ids))))
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"parent artifact(s) {missing} not found; register parents before their children")
    return ids


def _check_kind(kind: str) -> None:
    if kind not in ARTIFACT_KINDS:
        raise InvalidState(f"artifact kind {kind!r} is not one of {list(ARTIFACT_KINDS)}")
