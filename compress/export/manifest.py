"""Export integrity: sha256 manifest, atomic directory writes and verification before loading.

An export is a folder written to a temp dir in the same parent, every file fsynced, then renamed into
place, so a crash never leaves a half-written export under the final name. `manifest.json` records the
sha256 and size of every other file; `verify_export` checks them before anything is deserialised and
raises `ExportCorrupt` naming the file and how to fix it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "shrinkwrap-export"
FORMAT_VERSION = 1
_FIX = "re-export the model, or restore the export folder from the registry's artifact store"


class ExportCorrupt(ValueError):
    """An export folder fails verification: missing manifest, missing/extra/truncated/altered file."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (and `root` itself)."""
    for path in _files(root):
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    for folder in sorted({p.parent for p in _files(root)} | {root}, key=lambda p: -len(p.parts)):
        _fsync_dir(folder)


def write_manifest(root: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under `root` into `root/manifest.json` (with `fields`); returns the manifest."""
    files = {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in _files(root) if p.name != MANIFEST or p.parent != root}
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, **fields, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


@contextlib.contextmanager
def atomic_dir(dest: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `dest`; on success fsync it and rename it to `dest`, else delete it."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists; pick a new destination or pass overwrite=True")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if dest.exists():  # overwrite: move the old export aside first, drop it after the rename
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the export folder written by export_model")
    if not path.is_file():
        raise ExportCorrupt(f"{root} has no {MANIFEST}: it is not a shrinkwrap export or its writing was "
                            f"interrupted; {_FIX}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportCorrupt(f"{path} is not valid JSON ({err}); {_FIX}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise ExportCorrupt(f"{path} is not a {FORMAT} manifest; {_FIX}")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise ExportCorrupt(f"{path} has format version {manifest['version']}, this code reads <= "
                            f"{FORMAT_VERSION}; upgrade shrinkwrap")
    return manifest


def verify_export(root: str | os.PathLike) -> dict[str, Any]:
    """Check every file of an export against its manifest; returns the manifest or raises ExportCorrupt."""
    root = Path(root)
    manifest = read_manifest(root)
    listed = manifest["files"]
    for name, entry in listed.items():
        path = root / name
        if not path.is_file():
            raise ExportCorrupt(f"{path} is listed in {MANIFEST} but missing; {_FIX}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "altered (grew)"
            raise ExportCorrupt(f"{path} is {what}: {size} bytes, the manifest says {entry['bytes']}; {_FIX}")
        if sha256_file(path) != entry["sha256"]:
            raise ExportCorrupt(f"{path} is corrupt: its sha256 differs from the manifest; {_FIX}")
    extra = [p.relative_to(root).as_posix() for p in _files(root)
             if p.relative_to(root).as_posix() not in listed and p.relative_to(root).as_posix() != MANIFEST]
    if extra:
        raise ExportCorrupt(f"{root} holds files not in its manifest: {extra}; remove them or {_FIX}")
    return manifest
