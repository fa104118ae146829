"""Content-addressed artifact store: a blob lives at `<root>/sha256/ab/cdef...` (its sha256 in hex).

Why content addressing: the same bytes registered twice are stored once, a blob's name proves its
content (every read is verified: `ArtifactCorrupt` on mismatch), and a blob is never modified in place.

Crash invariant (what a SIGKILL at any moment can leave behind):
- a blob path under `sha256/` only ever holds complete, fsynced bytes: writes go to `<root>/tmp/`,
  are fsynced, then `os.replace`d into place (atomic on POSIX) and the directory is fsynced;
- an Artifact row is inserted only after its blob is durable (`register_artifact`), so a committed row
  always has its blob; a crash between blob and commit leaves an *unreferenced* blob, which is harmless
  (a later registration of the same bytes reuses it) and `collect_garbage` removes it after a grace
  period. A dedup hit re-verifies the stored blob (a damaged one is rewritten from the new bytes)
  and refreshes its mtime, so garbage collection never races a registration.

Directories (e.g. a Hugging Face export) are stored file by file plus a JSON manifest blob listing
`{path, sha256, bytes}`; the manifest's sha256 names the directory. `Blob.bytes` is the payload size
(sum of the files for a directory), which is what "model file bytes" means in a Pareto plot.

Roots: a local directory (default), or an fsspec URI such as `s3://bucket/prefix` or `memory://x`
(rename-free: fsspec object stores write an object atomically on close; `path()` is local-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from registry.errors import ArtifactCorrupt, InvalidState, NotFound

CHUNK = 1 << 20  # 1 MiB reads: large enough for throughput, small enough for memory
HEX_RE = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_KIND = "shrinkwrap-dir-manifest"


@dataclass(frozen=True)
class Blob:
    sha256: str
    bytes: int
    uri: str
    is_dir: bool = False


def check_digest(sha256: str) -> str:
    if not isinstance(sha256, str) or not HEX_RE.match(sha256):
        raise InvalidState(f"sha256 must be 64 lowercase hex characters, got {sha256!r}")
    return sha256


class ArtifactStore:
    """`ArtifactStore(root)`: root is a local directory or an fsspec URI (`memory://`, `s3://`, ...)."""

    def __init__(self, root: str | os.PathLike):
        root = str(root)
        self.fs = None
        if "://" in root and not root.startswith("file://"):
            import fsspec

            self.fs, self.root_uri = fsspec.core.url_to_fs(root)[0], root.rstrip("/")
            self._remote_root = fsspec.core.url_to_fs(root)[1].rstrip("/")
            self.root = None
        else:
            self.root = Path(root.removeprefix("file://")).expanduser().resolve()
            self.root_uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root_uri!r})"

    # -- locations ------------------------------------------------------------------------------
    def _rel(self, sha256: str) -> str:
        check_digest(sha256)
        return f"sha256/{sha256[:2]}/{sha256[2:]}"

    def uri(self, sha256: str) -> str:
        return f"{self.root_uri}/{self._rel(sha256)}"

    def _local(self, sha256: str) -> Path:
        return self.root / self._rel(sha256)

    def _remote(self, sha256: str) -> str:
        return f"{self._remote_root}/{self._rel(sha256)}"

    def _remote_target(self, sha256: str) -> str:
        """The blob's remote path, its folder created (object stores ignore this; a filesystem needs it)."""
        target = self._remote(sha256)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        return target

    def exists(self, sha256: str) -> bool:
        if self.fs is not None:
            return self.fs.exists(self._remote(sha256))
        return self._local(sha256).is_file()

    # -- writing --------------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> Blob:
        sha = hashlib.sha256(data).hexdigest()
        if self.fs is not None:
            if not self.fs.exists(self._remote(sha)):
                self.fs.pipe_file(self._remote_target(sha), data)
            return Blob(sha, len(data), self.uri(sha))
        tmp = self._tmp_file()
        with open(tmp, "wb") as fh:
            fh.write(data)
        return self._commit_tmp(tmp, sha, len(data))

    def put_file(self, path: str | os.PathLike) -> Blob:
        """Store one file (streamed; hashed while copied). Returns its Blob."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"cannot store {path}: not a file")
        if self.fs is not None:
            sha, size = _hash_file(path)
            if not self.fs.exists(self._remote(sha)):
                self.fs.put_file(str(path), self._remote_target(sha))
            return Blob(sha, size, self.uri(sha))
        tmp = self._tmp_file()
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        return self._commit_tmp(tmp, digest.hexdigest(), size)

    def put_dir(self, path: str | os.PathLike) -> Blob:
        """Store every regular file under `path` and a manifest; returns the manifest's Blob (is_dir)."""
        path = Path(path)
        if not path.is_dir():
            raise NotFound(f"cannot store {path}: not a directory")
        files = []
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
            blob = self.put_file(file)
            files.append({"path": file.relative_to(path).as_posix(), "sha256": blob.sha256, "bytes": blob.bytes})
        manifest = {"kind": MANIFEST_KIND, "version": 1, "files": files}
        blob = self.put_bytes(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
        return Blob(blob.sha256, sum(f["bytes"] for f in files), blob.uri, is_dir=True)

    def put(self, path: str | os.PathLike) -> Blob:
        return self.put_dir(path) if Path(path).is_dir() else self.put_file(path)

    def _tmp_file(self) -> Path:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="blob-", suffix=".part")
        os.close(fd)
        return Path(name)

    def _commit_tmp(self, tmp: Path, sha: str, size: int) -> Blob:
        """fsync the temp file, then move it to its content address (or drop it if already there)."""
        target = self._local(sha)
        try:
            if target.is_file() and target.stat().st_size == size and self._intact(sha):
                os.utime(target)  # refresh mtime: protects the blob from a concurrent garbage collection
                return Blob(sha, size, self.uri(sha))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)  # blobs are immutable
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            return Blob(sha, size, self.uri(sha))
        finally:
            tmp.unlink(missing_ok=True)

    def _intact(self, sha256: str) -> bool:
        """Whether the stored blob still hashes to its name (a damaged one is replaced by the new write)."""
        try:
            self.verify(sha256)
        except ArtifactCorrupt:
            return False
        return True

    # -- reading --------------------------------------------------------------------------------
    def open(self, sha256: str) -> IO[bytes]:
        """A binary reader over the blob that raises ArtifactCorrupt at EOF if the bytes don't match."""
        check_digest(sha256)
        if not self.exists(sha256):
            raise NotFound(f"blob {sha256} is not in {self}; was it garbage-collected or stored elsewhere?")
        fh = self.fs.open(self._remote(sha256), "rb") if self.fs is not None else open(self._local(sha256), "rb")  # noqa: SIM115
        return _VerifyingReader(fh, sha256, self.uri(sha256))

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as fh:
            return fh.read()

    def verify(self, sha256: str) -> int:
        """Hash the whole blob; returns its size, raises ArtifactCorrupt on mismatch, NotFound if absent."""
        size = 0
        with self.open(sha256) as fh:
            while chunk := fh.read(CHUNK):
                size += len(chunk)
        return size

    def path(self, sha256: str, *, verify: bool = True) -> Path:
        """The local file of a blob (read-only), verified first unless `verify=False`."""
        if self.fs is not None:
            raise InvalidState(f"{self} is not a local directory; use get_file(sha256, dest) to copy the blob")
        if verify:
            self.verify(sha256)
        elif not self.exists(sha256):
            raise NotFound(f"blob {sha256} is not in {self}")
        return self._local(sha256)

    def get_file(self, sha256: str, dest: str | os.PathLike) -> Path:
        """Copy a blob to `dest` atomically, verifying while copying (dest never holds corrupt bytes)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with self.open(sha256) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return dest

    def read_manifest(self, sha256: str) -> list[dict]:
        try:
            manifest = json.loads(self.read_bytes(sha256))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InvalidState(f"blob {sha256} is not a directory manifest ({err})") from err
        if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
            raise InvalidState(f"blob {sha256} is not a directory manifest (no kind={MANIFEST_KIND!r})")
        for entry in manifest["files"]:
            rel = PurePosixPath(entry["path"])
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise ArtifactCorrupt(f"manifest {sha256} lists an unsafe path {entry['path']!r}")
            check_digest(entry["sha256"])
        return manifest["files"]

    def materialize_dir(self, sha256: str, dest: str | os.PathLike) -> Path:
        """Recreate a stored directory under `dest` (created; existing files are overwritten)."""
        dest = Path(dest)
        for entry in self.read_manifest(sha256):
            self.get_file(entry["sha256"], dest / entry["path"])
        return dest

    def verify_dir(self, sha256: str) -> int:
        return sum(self.verify(entry["sha256"]) for entry in self.read_manifest(sha256))

    # -- maintenance ----------------------------------------------------------------------------
    def iter_blobs(self) -> Iterator[str]:
        if self.fs is not None:
            for p in self.fs.find(f"{self._remote_root}/sha256"):
                name = p.rstrip("/").split("/")
                if HEX_RE.match(name[-2] + name[-1]):
                    yield name[-2] + name[-1]
            return
        for p in (self.root / "sha256").glob("??/*"):
            if HEX_RE.match(p.parent.name + p.name):
                yield p.parent.name + p.name

    def delete(self, sha256: str) -> None:
        if self.fs is not None:
            self.fs.rm_file(self._remote(sha256))
        else:
            self._local(sha256).unlink(missing_ok=True)

    def age_seconds(self, sha256: str) -> float:
        """Seconds since the blob was last written or reused (0.0 when an fsspec backend doesn't say)."""
        if self.fs is None:
            return time.time() - self._local(sha256).stat().st_mtime
        info = self.fs.info(self._remote(sha256))
        stamp = info.get("mtime") or info.get("LastModified") or info.get("created")
        if stamp is None:
            return 0.0
        stamp = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
        return time.time() - stamp

    def stale_temp_files(self, older_than: float) -> list[Path]:
        if self.fs is not None or not (self.root / "tmp").is_dir():
            return []
        now = time.time()
        return [p for p in (self.root / "tmp").iterdir() if now - p.stat().st_mtime >= older_than]


class _VerifyingReader:
    """File wrapper hashing what is read; at EOF (a read returning b'') compares with the expected sha."""

    def __init__(self, fh, sha256: str, uri: str):
        self._fh, self._sha, self._uri = fh, sha256, uri
        self._digest = hashlib.sha256()
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._digest.update(data)
        if not data or n is None or n < 0:
            self._check()
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        got = self._digest.hexdigest()
        if got != self._sha:
            raise ArtifactCorrupt(f"blob {self._uri} is corrupt: its bytes hash to {got}, expected {self._sha}; "
                                  "re-register the artifact from its source or restore the store from backup")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
