"""Streamed blob downloads with HTTP caching and resumption.

- The ETag is the blob's sha256 (strong: the bytes cannot change under a content address), so
  `If-None-Match` answers 304 without reading the file and `If-Range` resumes only the same bytes.
- One byte range (`Range: bytes=a-b`, `a-`, `-n`) answers 206 with `Content-Range`; a range past the
  end answers 416; multi-range, other units or malformed headers are ignored (full 200), as RFC 9110
  allows.
- Full downloads stream through the store's verifying reader: corrupt bytes abort the transfer at the
  end instead of completing silently (Content-Length tells the client it was cut short).
- The file is always found by its sha256 from the database row, through `ArtifactStore`; no part of the
  request is ever joined onto a filesystem path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from api.errors import ApiError
from registry.errors import NotFound
from registry.store import CHUNK, ArtifactStore

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str) -> str:
    cleaned = _SAFE_NAME.sub("_", name).strip("._") or "artifact"
    return cleaned[:200]


def etag_matches(header: str, etag: str) -> bool:
    """Weak comparison for If-None-Match (RFC 9110 13.1.2): `*` or any listed tag, W/ ignored."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) byte of a single `bytes=` range; None to ignore the header; 416 when
    the range starts past the end."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isascii() and last.isascii()) or (first and not first.isdigit()) or \
            (last and not last.isdigit()) or (not first and not last):
        return None
    if not first:  # suffix range: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(416, "range_not_satisfiable", f"requested range starts past the end of the {size}-byte blob",
                    headers={"Content-Range": f"bytes */{size}"})


def _iter_full(store: ArtifactStore, sha256: str) -> Iterator[bytes]:
    with store.open(sha256) as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _iter_range(store: ArtifactStore, sha256: str, start: int, end: int) -> Iterator[bytes]:
    remaining = end - start + 1
    if store.fs is None:  # local store: seek straight to the range
        fh = open(store.path(sha256, verify=False), "rb")  # noqa: SIM115 - closed in finally
        fh.seek(start)
    else:  # object store: read and drop the prefix (no random access through the verifying reader)
        fh = store.open(sha256)
        skip = start
        while skip:
            skip -= len(fh.read(min(CHUNK, skip))) or skip
    try:
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


def blob_response(request: Request, store: ArtifactStore, *, sha256: str, size: int, filename: str,
                  media_type: str = "application/octet-stream") -> Response:
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache",
               "Content-Disposition": f'attachment; filename="{safe_filename(filename)}"'}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag_matches(inm, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    if not store.exists(sha256):
        raise NotFound(f"the bytes of blob {sha256} are missing from the artifact store; "
                       "run the registry's store check (fsck) and re-register the artifact")
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    span = parse_range(header, size) if header and (if_range is None or if_range.strip() == etag) else None
    if span is None:
        return StreamingResponse(_iter_full(store, sha256), media_type=media_type,
                                 headers={**headers, "Content-Length": str(size)})
    start, end = span
    headers.update({"Content-Range": f"bytes {start}-{end}/{size}", "Content-Length": str(end - start + 1)})
    return StreamingResponse(_iter_range(store, sha256, start, end), status_code=206, media_type=media_type,
                             headers=headers)
