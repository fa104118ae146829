"""Artifacts: metadata, metrics, lineage graph, and downloads (ETag = sha256, Range, If-None-Match).

A directory artifact (e.g. a Hugging Face export) downloads as its JSON manifest; its files are listed
by GET /artifacts/{id}/files and fetched one by one by their manifest path, which is looked up in the
manifest, never joined onto a filesystem path.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import DbDep, PageDep, StoreDep
from api.download import blob_response
from api.errors import ApiError
from api.lineage import artifact_graph
from api.schemas import (
    SHA256_PATTERN,
    ArtifactPublic,
    ArtifactsPublic,
    ErrorBody,
    LineageGraph,
    MetricsPublic,
)
from registry.errors import InvalidState, NotFound
from registry.repository import artifacts as repo
from registry.repository import metrics as metrics_repo
from registry.store import ArtifactStore

router = APIRouter(prefix="/artifacts", tags=["artifacts"])
ArtifactIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="artifact id")]
ArtifactKind = Literal["dataset", "teacher", "soft-labels", "checkpoint", "export", "plot", "report"]
MAX_FILE_PATH = 1024
DOWNLOAD_RESPONSES = {
    200: {"content": {"application/octet-stream": {}, "application/json": {}},
          "description": "the bytes (a directory artifact: its JSON manifest)"},
    206: {"content": {"application/octet-stream": {}}, "description": "the requested byte range"},
    304: {"description": "not modified (If-None-Match matched the sha256 ETag)"},
    416: {"model": ErrorBody, "description": "range starts past the end"},
}


class ManifestFile(BaseModel):
    path: str
    sha256: str
    bytes: int


class ManifestPublic(BaseModel):
    data: list[ManifestFile]
    count: int


@router.get("", response_model=ArtifactsPublic, summary="List artifacts, newest first")
async def list_artifacts(db: DbDep, page: PageDep, kind: ArtifactKind | None = None,
                         run_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
                         sha256: Annotated[str | None, Query(pattern=SHA256_PATTERN)] = None):
    def listing(session: Session) -> ArtifactsPublic:
        rows, total = repo.list_artifacts(session, kind=kind, run_id=run_id, sha256=sha256, limit=page.limit,
                                          offset=page.offset)
        return ArtifactsPublic(data=rows, count=total)

    return await db.run(listing)


@router.get("/{artifact_id}", response_model=ArtifactPublic, summary="Artifact metadata")
async def get_artifact(db: DbDep, artifact_id: ArtifactIdPath):
    return await db.run(lambda s: ArtifactPublic.model_validate(repo.get_artifact(s, artifact_id=artifact_id)))


@router.get("/{artifact_id}/metrics", response_model=MetricsPublic, summary="Metrics logged on an artifact")
async def artifact_metrics(db: DbDep, artifact_id: ArtifactIdPath):
    def listing(session: Session) -> MetricsPublic:
        repo.get_artifact(session, artifact_id=artifact_id)
        rows = metrics_repo.list_metrics(session, artifact_id=artifact_id)
        return MetricsPublic(data=rows, count=len(rows))

    return await db.run(listing)


@router.get("/{artifact_id}/lineage", response_model=LineageGraph, summary="Ancestors of an artifact as a graph")
async def artifact_lineage(db: DbDep, artifact_id: ArtifactIdPath):
    return await db.run(lambda s: artifact_graph(repo.artifact_lineage(s, artifact_id=artifact_id)))


@router.get("/{artifact_id}/download", summary="Download the artifact's bytes (a directory: its manifest)",
            response_class=Response, responses=DOWNLOAD_RESPONSES)
async def download_artifact(request: Request, db: DbDep, store: StoreDep, artifact_id: ArtifactIdPath):
    def locate(session: Session) -> tuple[str, int, str, str]:
        row = repo.get_artifact(session, artifact_id=artifact_id)
        if row.is_dir:  # its manifest, whose size is read here in the worker thread
            return row.sha256, len(store.read_bytes(row.sha256)), "application/json", \
                f"{row.kind}-{row.id}.manifest.json"
        return row.sha256, row.bytes, "application/octet-stream", f"{row.kind}-{row.id}.{row.format}"

    sha256, size, media_type, filename = await db.run(locate)
    return blob_response(request, store, sha256=sha256, size=size, media_type=media_type, filename=filename)


@router.get("/{artifact_id}/files", response_model=ManifestPublic, summary="Files of a directory artifact")
async def list_files(db: DbDep, store: StoreDep, artifact_id: ArtifactIdPath):
    files = await db.run(lambda s: _manifest(s, store, artifact_id))
    return ManifestPublic(data=files, count=len(files))


@router.get("/{artifact_id}/files/{file_path:path}", summary="Download one file of a directory artifact",
            response_class=Response, responses=DOWNLOAD_RESPONSES)
async def download_file(request: Request, db: DbDep, store: StoreDep, artifact_id: ArtifactIdPath,
                        file_path: Annotated[str, Path(max_length=MAX_FILE_PATH, description="path in the manifest")]):
    rel = PurePosixPath(file_path)
    if rel.is_absolute() or ".." in rel.parts or "\\" in file_path or "\x00" in file_path:
        raise ApiError(400, "bad_path", f"file path {file_path!r} must be relative and must not contain '..'; "
                                        "use a path listed by GET /artifacts/{id}/files")
    for entry in await db.run(lambda s: _manifest(s, store, artifact_id)):
        if entry["path"] == file_path:
            return blob_response(request, store, sha256=entry["sha256"], size=entry["bytes"],
                                 filename=rel.name)
    raise NotFound(f"artifact {artifact_id} has no file {file_path!r}; list them with GET /artifacts/{artifact_id}/files")


def _manifest(session: Session, store: ArtifactStore, artifact_id: int) -> list[dict]:
    row = repo.get_artifact(session, artifact_id=artifact_id)
    if not row.is_dir:
        raise InvalidState(f"artifact {artifact_id} is a single file, not a directory; "
                           f"download it with GET /artifacts/{artifact_id}/download")
    return store.read_manifest(row.sha256)
